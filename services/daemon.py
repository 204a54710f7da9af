"""The orchestrator: source -> VAD -> [store: audio file + row] -> bounded queue -> inference worker.

One asyncio loop owns I/O (sources, API, events); one thread owns the models (services/worker.py).
Write-ahead of inference: an utterance's audio is fsynced and its row committed before the worker
sees it, so a crash at any point loses nothing; at start, rows left unprocessed are queued again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import threading
import time

import numpy as np

from assistant.config import Config
from assistant_services import sdnotify
from assistant_services.events import EventBus
from assistant_services.startup import prepare_store, retention_loop
from assistant_services.token import SHARED_MODE, ensure_token
from assistant_services.worker import Activation, InferenceWorker, UtteranceJob

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, config: Config, announce=None) -> None:
        self.config = config
        self.announce = announce or (lambda line: None)  # the CLI prints what a user must know at start
        self.data_dir = config.data_path
        self.started_at = time.time()
        self.last_activity = time.time()
        self.store = None
        self.worker: InferenceWorker | None = None
        self.bus: EventBus | None = None
        self.metrics = None
        self.source = None
        self.activation = Activation(config.daemon.activation, config.daemon.wake_phrase,
                                     config.daemon.listen_window_s, config.daemon.followup_s)
        self.token = ""
        self.api_port: int | None = None
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Inference and alignment share the frozen models: one of them at a time, inference first.
        self.model_lock = threading.Lock()
        self.preempt = threading.Event()  # set by any activity: a running alignment job pauses
        self.scheduler = None
        self.timers = None  # assistant_services.timers.TimerService when [actions] enabled
        self.speaker = None  # assistant_services.output.Speaker when [output] speak
        self.ringer = None
        self._live: dict = {}  # source name -> assistant_services.live.LiveStream of the utterance it is speaking

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    # --- lifecycle --------------------------------------------------------------------------------
    def request_stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def run(self) -> int:
        from assistant.store import open_store

        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._stop.set)
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = await asyncio.to_thread(open_store, self.data_dir)
        self.token = ensure_token(self.config)
        self.bus = EventBus(self._loop)
        from assistant_services.metrics import Metrics

        self.metrics = Metrics(queue_depth=lambda: self.worker.depth if self.worker else 0,
                               job_states=self._job_states)
        executor = self._build_actions()
        if self.config.output.speak:
            from assistant_services.output import Speaker

            out = self.config.output
            self.speaker = Speaker(voice=out.voice, device=out.device, echo_share=out.echo_share)
            self.speaker.on_event = self.bus.publish
        self.worker = InferenceWorker(self._load_engine, store=self.store, data_dir=self.data_dir,
                                      activation=self.activation, publish=self.bus.publish,
                                      queue_max=self.config.daemon.queue_max,
                                      queue_policy=self.config.daemon.queue_policy,
                                      cache_encoded=self.config.store.cache_encoder_outputs, metrics=self.metrics,
                                      model_lock=self.model_lock, preempt=self.preempt, executor=executor,
                                      on_reply=self._say)
        self.worker.start()
        await asyncio.to_thread(self.worker.ready.wait)
        if self.worker.load_error is not None:
            raise self.worker.load_error
        await asyncio.to_thread(prepare_store, self.store, self.data_dir, self.worker.engine)
        from assistant_services.bridges import restore_active

        await restore_active(self)
        await self._requeue_pending()
        server, api_task = await self._start_api()
        wyoming, wyoming_port = await self._start_wyoming()
        # what the CLI verbs (and tests) read to find the daemon: written once everything listens
        info = {"pid": os.getpid(), "host": self.config.api.host, "port": self.api_port}
        (self.data_dir / "daemon.json").write_text(json.dumps({**info, "wyoming_port": wyoming_port}))
        os.chmod(self.data_dir / "daemon.json", SHARED_MODE)
        source_task = asyncio.create_task(self._source_loop(), name="source")
        watchdog = asyncio.create_task(sdnotify.watchdog_loop(), name="watchdog")
        retention = asyncio.create_task(retention_loop(self.store, self.data_dir, self.config.store), name="retention")
        self.scheduler = self._build_scheduler()
        scheduler_task = asyncio.create_task(self.scheduler.run(), name="alignment-scheduler")
        timers_task = asyncio.create_task(self.timers.run(), name="timers") if self.timers else None
        sdnotify.notify("READY=1", f"STATUS=serving on {self.config.api.host}:{self.api_port}")
        log.info("ready: API on http://%s:%s, source %s, bundle %s", self.config.api.host, self.api_port,
                 self.config.source.kind, self.config.bundle_path())
        host = "127.0.0.1" if self.config.api.host in ("0.0.0.0", "::", "") else self.config.api.host
        self.announce(f"ready: http://{host}:{self.api_port} (API docs at /docs), the API token is in "
                      f"{self.data_dir / 'api-token'}; listening on {self.config.source.kind}"
                      + (f", Wyoming on port {wyoming_port}" if wyoming_port else "") + ". Ctrl-C stops.")
        await self._stop.wait()
        log.info("stopping: finishing the utterance in flight")
        sdnotify.notify("STOPPING=1")
        source_task.cancel()
        scheduler_task.cancel()
        tasks = [source_task, scheduler_task]
        if timers_task is not None:
            timers_task.cancel()
            tasks.append(timers_task)
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.ringer is not None:
            await asyncio.to_thread(self.ringer.stop)
        if self.speaker is not None:
            self.speaker.stop()
            await asyncio.to_thread(self.speaker.join, 2.0)
        await asyncio.to_thread(self.scheduler.stop, 5.0)  # a training step is short; it pauses at the next one
        if self.source is not None:
            await self.source.close()
        if wyoming is not None:
            await wyoming.stop()
        self.bus.close()  # event WebSockets close themselves (1001) instead of being cut at the deadline
        await self.bus.drained(1.0)  # ... before the server stops, which would close them as 1012
        server.should_exit = True
        try:  # open keep-alive connections and WebSockets get a few seconds, then are cut
            await asyncio.wait_for(asyncio.gather(api_task, return_exceptions=True), timeout=5)
        except asyncio.TimeoutError:
            log.warning("the API did not close within 5 s; cutting remaining connections")
            api_task.cancel()
        joined = await asyncio.to_thread(self.worker.stop, self.config.daemon.shutdown_timeout_s)
        if not joined:
            log.error("the inference worker did not finish within %.0f s; its utterance stays queued in the store",
                      self.config.daemon.shutdown_timeout_s)
        watchdog.cancel()
        retention.cancel()
        await asyncio.to_thread(self.store.close)
        (self.data_dir / "daemon.json").unlink(missing_ok=True)
        return 0

    def _say(self, job, reply: str) -> None:
        """A reply to a microphone turn is said aloud (API and satellite turns get it as text)."""
        if self.speaker is not None and job.source == "mic":
            self.speaker.say(reply)

    def _say_reminder(self, text: str) -> bool:
        if self.speaker is None:
            return False
        self.speaker.say(text)
        return True

    def _build_actions(self):
        """The ring, the timer loop and the action executor ([actions]); None when actions are off."""
        from assistant.skills.executor import Executor
        from assistant_services.timers import Ringer, TimerService

        cfg = self.config.actions
        if not cfg.enabled:
            return None
        self.ringer = Ringer(enabled=cfg.ring, seconds=cfg.ring_seconds, device=self.config.output.device)
        self.timers = TimerService(self.store, self.bus.publish, self.ringer, say=self._say_reminder)
        from assistant_services.handoff import build_handoff

        return Executor(self.store, stop_ringing=self.ringer.stop, on_change=self.timers.changed,
                        handoff=build_handoff(self.config))

    def _load_engine(self):
        import torch

        from assistant.engine.engine import Engine

        if self.config.engine.threads:
            torch.set_num_threads(self.config.engine.threads)
        e = self.config.engine
        return Engine.from_bundle(self.config.bundle_path(), bridge_kind=e.bridge_kind or None, device=e.device,
                                  speculative=e.speculative, data_dir=self.config.data_path)

    async def _start_api(self):
        import uvicorn

        from assistant_services.api.app import create_app

        app = create_app(self)
        cfg = uvicorn.Config(app, host=self.config.api.host, port=self.config.api.port, log_level="warning",
                             lifespan="off", access_log=False, timeout_graceful_shutdown=3)
        server = uvicorn.Server(cfg)
        # The daemon owns SIGTERM/SIGINT: uvicorn (0.29: install_signal_handlers; later: capture_signals) would
        # otherwise start its own shutdown at the signal and close the events WebSockets as 1012 before the
        # daemon has closed them itself (1001) and stopped the rest in order
        server.install_signal_handlers = lambda: None
        server.capture_signals = contextlib.nullcontext
        task = asyncio.create_task(server.serve(), name="api")
        while not server.started:
            if task.done():
                await task  # re-raises a bind error
                raise RuntimeError("the API server stopped while starting")
            await asyncio.sleep(0.02)
        self.api_port = server.servers[0].sockets[0].getsockname()[1]
        return server, task

    async def _start_wyoming(self):
        """The Wyoming server ([wyoming] enabled) and its port, or (None, None)."""
        if not self.config.wyoming.enabled:
            return None, None
        from assistant_services.wyoming_server import start

        return await start(self)

    def _build_scheduler(self):
        from assistant_services.scheduler import JobContext, Scheduler

        w = self.worker
        return Scheduler(JobContext(config=self.config.alignment, store=self.store, data_dir=self.data_dir,
                                    engine=lambda: w.engine, on_engine=w.call, model_lock=self.model_lock,
                                    preempt=self.preempt, publish=self.bus.publish,
                                    idle_s=lambda: time.time() - self.last_activity,
                                    inference_busy=lambda: bool(w.depth) or w.busy_since is not None))

    def _job_states(self) -> dict[str, int]:
        from assistant.store import repo

        try:
            with self.store.session(write=False) as s:
                jobs = repo.list_jobs(s, limit=1000)
        except Exception:  # metrics must never break the scrape
            return {}
        counts: dict[str, int] = {}
        for j in jobs:
            counts[j.state] = counts.get(j.state, 0) + 1
        return counts

    # --- utterances -------------------------------------------------------------------------------
    def touch(self) -> None:
        """User activity: resets the idle clock and pauses a running alignment job."""
        self.last_activity = time.time()
        self.preempt.set()

    async def store_utterance(self, samples: np.ndarray, *, source: str, started_at: float | None = None,
                              ended_at: float | None = None, label_text: str | None = None,
                              label_source: str | None = None, prompt_id: int | None = None) -> int:
        """Write the audio (fsynced) and commit the row; returns the utterance id."""
        from datetime import datetime, timezone

        def at(t: float | None):
            return None if t is None else datetime.fromtimestamp(t, tz=timezone.utc)

        def write() -> int:
            from assistant.store import repo

            with self.store.session() as s:
                u = repo.record_utterance(s, data_dir=self.data_dir, samples=samples, source=source,
                                          speech_started_at=at(started_at), speech_ended_at=at(ended_at),
                                          label_text=label_text, label_source=label_source, prompt_id=prompt_id)
                return u.id

        return await asyncio.to_thread(write)

    async def submit(self, utterance_id: int, samples: np.ndarray, *, source: str, captured_at: float,
                     respond: bool | None = None, wait: bool = False, backlog: bool = False, stream=None):
        import concurrent.futures as cf

        fut: cf.Future | None = cf.Future() if wait else None
        self.worker.submit(UtteranceJob(utterance_id, samples, source, captured_at, respond, fut, stream),
                           backlog=backlog)
        self.bus.publish("utterance_queued", utterance_id=utterance_id, queue_depth=self.worker.depth)
        return await asyncio.wrap_future(fut) if fut is not None else None

    async def _requeue_pending(self) -> None:
        from assistant.audio import load_audio
        from assistant.store import repo

        def pending():
            with self.store.session(write=False) as s:
                return [(u.id, u.audio_path, u.source, u.created_at.timestamp()) for u in repo.pending_utterances(s)]

        rows = await asyncio.to_thread(pending)
        for uid, rel, source, at in rows:
            try:
                audio = await asyncio.to_thread(load_audio, self.data_dir / rel, max_duration_s=3600)
            except Exception as exc:  # a damaged file: mark it, keep going
                def fail(uid=uid, exc=exc):
                    with self.store.session() as s:
                        repo.fail_utterance(s, utterance_id=uid, error=f"audio unreadable after restart: {exc}")
                await asyncio.to_thread(fail)
                continue
            # Answered late is not answered at all for live speech: the backlog is transcribed and logged.
            await self.submit(uid, audio.samples, source=source, captured_at=at, respond=False, backlog=True)
        if rows:
            log.info("re-queued %d utterance(s) left unprocessed by the previous run", len(rows))

    async def _source_loop(self) -> None:
        from assistant_services.pipeline import run_source

        self.source = self._make_source()
        if self.source is None:
            return
        await run_source(self, self.source)

    def _make_source(self):
        s = self.config.source
        if s.kind == "none":
            return None
        from assistant_services.sources import FileSource, MicSource

        if s.kind == "file":
            return FileSource(s.path)
        return MicSource(s.device, reopen_interval_s=s.reopen_interval_s)

    # --- encoding while the user speaks -------------------------------------------------------------
    def stream_begin(self, source_name: str) -> None:
        """Speech started: its chunks are encoded as they arrive (engine.stream_chunk_s; 0 turns it off)."""
        self.stream_drop(source_name)
        e = self.config.engine
        if e.stream_chunk_s > 0 and self.worker is not None:
            from assistant_services.live import LiveStream

            self._live[source_name] = live = LiveStream(chunk_s=e.stream_chunk_s, context_s=e.stream_context_s,
                                                        lookahead_s=e.stream_lookahead_s)
            self.worker.open_stream(live)

    def stream_audio(self, source_name: str, pcm: bytes) -> None:
        live = self._live.get(source_name)
        if live is not None and live.add_pcm16(pcm):
            self.worker.kick()

    def stream_pause(self, source_name: str, samples: int) -> None:
        """The VAD's SpeechPaused: the utterance may end with its first ``samples`` samples; the
        inference thread transcribes that guess in the rest of the hangover (services/live.py)."""
        live = self._live.get(source_name)
        if live is not None:
            live.pause(samples)
            self.worker.kick()

    def stream_drop(self, source_name: str) -> None:
        live = self._live.pop(source_name, None)
        if live is not None:
            self.worker.close_stream(live)

    async def handle_segment(self, segment, source_name: str) -> int:
        """A VAD segment: store it (write-ahead), then queue it for inference."""
        from assistant.audio import from_pcm16

        live = self._live.pop(source_name, None)
        if live is not None:
            self.worker.close_stream(live)  # its chunks go with the job; the tail is encoded there

        samples = from_pcm16(segment.pcm, max_duration_s=3600, min_duration_s=0.01).samples
        now = time.time()
        started = now - (segment.ended_at - segment.started_at)
        uid = await self.store_utterance(samples, source=source_name, started_at=started, ended_at=now)
        self.touch()
        self.bus.publish("utterance_ended", utterance_id=uid, duration_s=round(segment.duration_s, 3),
                         source=source_name)
        await self.submit(uid, samples, source=source_name, captured_at=started, stream=live)
        return uid


def serve(config: Config, announce=None) -> int:
    return asyncio.run(Daemon(config, announce).run())
