"""The one inference thread: it owns the models and runs every engine call, in order.

Utterances arrive already stored (audio file fsynced + row committed by the orchestrator), so a
crash here loses nothing: on restart the orchestrator re-queues rows left ``captured``/``processing``.
The queue of utterances is bounded; when full, ``daemon.queue_policy`` decides which utterance is
not answered (its row is kept and marked ``skipped``, logged and announced: nothing vanishes).
Other callers (API turns, bridge swaps) hand the thread a function with ``call`` and await it.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from assistant.errors import AssistantError

log = logging.getLogger(__name__)
WAKE_ONLY = "Yes?"  # the reply to the wake phrase said alone


@dataclass
class UtteranceJob:
    utterance_id: int
    samples: np.ndarray  # 16 kHz mono float32
    source: str
    captured_at: float  # wall clock at speech start (push-to-talk windows are judged on it)
    respond: bool | None = None  # True: always (API turns), False: never (enrollment), None: activation decides
    future: cf.Future | None = field(default=None, repr=False)
    stream: Any = field(default=None, repr=False)  # assistant_services.live.LiveStream: chunks encoded while spoken
    bounded: bool = True  # counts toward daemon.queue_max and may be dropped (submit(backlog=True): never)


@dataclass
class _CallJob:
    fn: Callable[[Any], Any]
    future: cf.Future


class Activation:
    """Decides, from the transcript, whether an utterance gets a response (it is logged either way)."""

    def __init__(self, mode: str, wake_phrase: str, window_s: float, followup_s: float = 0.0) -> None:
        from assistant.metrics import normalize

        self.mode, self.window_s, self.followup_s = mode, window_s, followup_s
        self._phrase = normalize(wake_phrase)
        self._window = (0.0, 0.0)
        self._quiet = (0.0, 0.0)  # (from, until): nothing captured then is answered (enrollment recordings)
        self._followup_until = 0.0  # wake_phrase: a request captured before this needs no phrase
        self._lock = threading.Lock()

    def quiet(self, seconds: float) -> float:
        """Answer nothing captured from now for ``seconds`` (0: end the quiet now); returns its end."""
        with self._lock:
            now = time.time()
            self._quiet = (now, now + seconds) if seconds > 0 else (0.0, 0.0)
            return self._quiet[1]

    def quiet_until(self) -> float:
        return self._quiet[1]

    def replied(self) -> None:
        """A reply was given: in wake_phrase mode, the next request within followup_s needs no phrase."""
        if self.mode == "wake_phrase" and self.followup_s > 0:
            with self._lock:
                self._followup_until = time.time() + self.followup_s

    def open_window(self, seconds: float | None = None) -> float:
        with self._lock:
            now = time.time()
            self._window = (now, now + (seconds or self.window_s))
            return self._window[1]

    def window_open_until(self) -> float:
        return self._window[1]

    @property
    def phrase(self) -> str:
        return self._phrase

    def decide(self, transcript: str, captured_at: float, after_phrase: str | None = None) -> tuple[bool, str]:
        """-> (respond?, the text to respond to). ``after_phrase``: wake_phrase mode, what the engine
        heard after the phrase when the audio starts with it (``Engine.after_wake_phrase``), else None
        (then the transcript itself is matched)."""
        from assistant.metrics import normalize

        start, until = self._quiet
        if start - 0.5 <= captured_at <= until:  # e.g. the user reading an enrollment prompt aloud
            return False, transcript
        if self.mode == "always":
            return True, transcript
        if self.mode == "push_to_talk":
            start, end = self._window
            return start - 0.5 <= captured_at <= end, transcript  # 0.5 s: speech may start as the button is hit
        if after_phrase is not None:  # "" when the phrase was all: the request comes next
            return True, after_phrase
        norm = normalize(transcript)
        if self._phrase and (norm == self._phrase or norm.startswith(self._phrase + " ")):
            return True, norm[len(self._phrase):].strip() or transcript
        with self._lock:
            if captured_at <= self._followup_until:  # a follow-up: the window is used up by it
                self._followup_until = 0.0
                return True, transcript
        return False, transcript


class InferenceWorker:
    def __init__(self, engine_factory: Callable[[], Any], *, store, data_dir: Path, activation: Activation,
                 publish: Callable[..., None], queue_max: int, queue_policy: str, cache_encoded: bool = True,
                 metrics=None, model_lock: threading.Lock | None = None,
                 preempt: threading.Event | None = None, executor=None,
                 on_reply: Callable[[UtteranceJob, str], None] | None = None) -> None:
        self._factory = engine_factory
        self.store, self.data_dir, self.activation = store, data_dir, activation
        self._publish, self._metrics = publish, metrics
        self.queue_max, self.queue_policy, self.cache_encoded = queue_max, queue_policy, cache_encoded
        self.engine = None
        self.model_lock = model_lock or threading.Lock()  # shared with alignment jobs
        self.preempt = preempt
        self.executor = executor  # assistant.skills.executor.Executor: does what a reply's action asks
        self.on_reply = on_reply  # a reply to say aloud (the daemon's Speaker, for microphone turns)
        self.ready = threading.Event()
        self.load_error: BaseException | None = None
        self.busy_since: float | None = None
        self._utterances: deque[UtteranceJob] = deque()
        self._calls: deque[_CallJob] = deque()
        self._streams: list[Any] = []  # assistant_services.live.LiveStream of utterances being spoken
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)

    # --- control (any thread) -------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float) -> bool:
        """Finish the job in flight (queued utterances stay stored for the next start); True if joined."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def depth(self) -> int:
        return len(self._utterances)

    @property
    def bounded_depth(self) -> int:
        """Queued utterances that count toward ``queue_max`` (live speech and API turns; not enrollment
        recordings or a restart's backlog, which are never dropped)."""
        with self._cond:
            return sum(j.bounded for j in self._utterances)

    def submit(self, job: UtteranceJob, *, backlog: bool = False) -> int | None:
        """Queue an utterance; returns the id of an utterance dropped by the queue policy, if any.

        ``backlog``: queued past the bound and never dropped: rows a previous run left unprocessed and
        enrollment recordings (labelled: training data). The bound is for live speech arriving faster
        than it is answered; it counts, and drops, only such utterances.
        """
        dropped: UtteranceJob | None = None
        with self._cond:
            job.bounded = not backlog
            live = [j for j in self._utterances if j.bounded]
            if job.bounded and len(live) >= self.queue_max:
                if (self.queue_policy == "drop_newest" and not job.respond) or not live:
                    dropped = job
                else:
                    dropped = live[0]
                    self._utterances.remove(dropped)
            if dropped is not job:
                self._utterances.append(job)
            self._cond.notify_all()
        if self.preempt is not None:
            self.preempt.set()  # inference has priority over a running alignment job
        if dropped is not None:
            self._skip(dropped, f"not answered: the inference queue was full ({self.queue_max}, "
                                f"policy {self.queue_policy})")
            return dropped.utterance_id
        return None

    def call(self, fn: Callable[[Any], Any]) -> cf.Future:
        """Run ``fn(engine)`` on the inference thread, between utterances."""
        fut: cf.Future = cf.Future()
        with self._cond:
            self._calls.append(_CallJob(fn, fut))
            self._cond.notify_all()
        return fut

    def open_stream(self, stream) -> None:
        """Encode ``stream``'s chunks while it is spoken, when nothing more urgent waits."""
        with self._cond:
            self._streams = [s for s in self._streams if not s.closed] + [stream]

    def close_stream(self, stream) -> None:
        """The utterance ended (its job carries the stream) or was dropped: no more chunk work."""
        with self._cond:
            stream.closed = True
            self._streams = [s for s in self._streams if s is not stream and not s.closed]

    def kick(self) -> None:
        """New audio in an open stream."""
        with self._cond:
            self._cond.notify_all()

    def _ready_stream(self):
        return next((s for s in self._streams if s.ready()), None)

    # --- the thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self.engine = self._factory()
        except BaseException as exc:  # reported by the daemon, which exits non-zero
            self.load_error = exc
            self.ready.set()
            return
        self.ready.set()
        while True:
            with self._cond:
                while not (self._calls or self._utterances or self._stopping or self._ready_stream()):
                    self._cond.wait()
                if self._calls:
                    job: Any = self._calls.popleft()
                elif self._utterances and not self._stopping:
                    job = self._utterances.popleft()
                elif not self._stopping:
                    job = self._ready_stream()
                else:
                    return
            self.busy_since = time.time()
            try:
                with self.model_lock:  # an alignment step in flight finishes first (at most one step)
                    if isinstance(job, _CallJob):
                        self._do_call(job)
                    elif isinstance(job, UtteranceJob):
                        self._process(job)
                    else:
                        self._stream_step(job)
            finally:
                self.busy_since = None

    def _do_call(self, job: _CallJob) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            job.future.set_result(job.fn(self.engine))
        except BaseException as exc:
            job.future.set_exception(exc)

    def _stream_step(self, stream) -> None:
        try:
            stream.step(self.engine)
        except Exception:  # the utterance is still encoded whole at its end
            log.exception("encoding a chunk of the utterance in progress failed; it will be encoded at its end")
            self.close_stream(stream)

    @staticmethod
    def _in_store(action) -> bool:
        from assistant.skills.executor import Executor

        return Executor.uses_store(action)

    def _act(self, session, action, reply: str, uid: int):
        from assistant.skills.executor import Outcome

        if self.executor is not None:
            return self.executor.execute(session, action, reply, utterance_id=uid)
        if action.name.split(".")[0] in ("timer", "alarm", "reminder", "handoff"):
            return Outcome("refused", "I can't do that: actions are turned off on this assistant.",
                           detail="[actions] enabled = false")
        return Outcome("done", reply)  # the clock's answers need nothing executed

    def _skip(self, job: UtteranceJob, reason: str) -> None:
        from assistant.store import repo

        log.warning("utterance %d %s", job.utterance_id, reason)
        with self.store.session() as s:
            repo.skip_utterance(s, utterance_id=job.utterance_id, reason=reason)
        self._publish("utterance_skipped", utterance_id=job.utterance_id, reason=reason)
        if job.future is not None and not job.future.done():
            from assistant.errors import BusyError

            job.future.set_exception(BusyError(reason, fix="try again in a moment"))

    def _process(self, job: UtteranceJob) -> None:
        from assistant.engine.engine import NOT_HEARD
        from assistant.store import files, repo

        uid = job.utterance_id
        engine = self.engine
        try:
            with self.store.session() as s:
                repo.mark_processing(s, utterance_id=uid)
            live, hint = (job.stream.encoder, job.stream.hint) if job.stream is not None else (None, None)
            # transcribed during the VAD's hangover, when the utterance ended where the pause said
            turn = job.stream.early_turn(job.samples, engine.bridge.version) if job.stream is not None else None
            early_by = time.time() - job.stream.early[2] if turn is not None else None
            if turn is None:
                turn = engine.run(job.samples, respond=False, stream=live, hint=hint)
            self._publish("transcript", utterance_id=uid, transcript=turn.transcript,
                          bridge_version=turn.bridge_version)
            after = None
            if job.respond is None:
                after = engine.after_wake_phrase(turn.encoded, self.activation.phrase) \
                    if self.activation.mode == "wake_phrase" and self.activation.phrase and turn.encoded else None
                respond, text = self.activation.decide(turn.transcript, job.captured_at, after)
            else:
                respond, text = job.respond, turn.transcript
            wake_only = respond and after == ""  # the wake phrase said alone
            heard = engine.understood(text) if respond and not wake_only else True
            if not heard:  # silence, a tone, noise read as "iiiiii": no reply from the LLM, no action
                log.info("utterance %d: %r reads as no words; not answered", uid, text)
                respond = bool(job.respond)  # an API turn still gets an answer, and it says so
            response = engine.respond(text) if respond and heard and not wake_only else None
            # the wake phrase alone: "Yes?", and the follow-up window (after the reply) takes the request
            unanswered = WAKE_ONLY if wake_only else NOT_HEARD if respond else None
            reply, response_s = (response.reply, response.seconds) if response else (unanswered, 0.0)
            action = response.action if response else None
            timings = {"encoder_s": turn.timings.encoder_s, "bridge_s": turn.timings.bridge_s,
                       "transcript_s": turn.timings.transcript_s, "response_s": response_s}
            if turn.streamed_audio_s:  # encoded while spoken: encoder_s is the tail's time only
                timings["streamed_audio_s"] = round(turn.streamed_audio_s, 3)
            if early_by is not None:  # how long the transcript had been ready when the utterance reached inference
                timings["early_by_s"] = round(early_by, 3)
            enc_path = frames = None
            if self.cache_encoded and turn.encoded is not None:
                try:
                    enc_path, frames = files.write_encoded(self.data_dir, uid, turn.encoded)
                except AssistantError as exc:  # the turn stands; only personalization loses this example
                    log.warning("utterance %d: encoder output not cached: %s", uid, exc)
            outcome = None
            if action is not None and not self._in_store(action):  # a hand-off: no write lock while it runs
                outcome = self._act(None, action, reply, uid)
                reply = outcome.reply
            with self.store.session() as s:  # the action and the turn's row: one transaction
                if action is not None and outcome is None:
                    outcome = self._act(s, action, reply, uid)
                    reply = outcome.reply
                repo.complete_turn(s, utterance_id=uid, transcript=turn.transcript, response=reply, timings=timings,
                                   bridge_version=turn.bridge_version,
                                   activation="responded" if respond else "logged_only",
                                   encoded_path=enc_path, encoded_frames=frames,
                                   action=action.to_dict() if action else None,
                                   action_outcome=outcome.to_dict() if outcome else None)
            if outcome is not None:
                if self.executor is not None:
                    self.executor.changed(action, outcome)
                self._publish("action", utterance_id=uid, action=action.to_dict(), outcome=outcome.to_dict())
            result = {"utterance_id": uid, "transcript": turn.transcript, "response": reply,
                      "bridge_version": turn.bridge_version, "timings": timings,
                      "activation": "responded" if respond else "logged_only",
                      "action": action.to_dict() if action else None,
                      "action_outcome": outcome.to_dict() if outcome else None}
            if respond:
                self._publish("response", utterance_id=uid, response=reply)
                if job.respond is None:  # a spoken turn: a follow-up may come without the wake phrase
                    self.activation.replied()
                if self.on_reply is not None and reply:
                    self.on_reply(job, reply)
            if self._metrics is not None:
                self._metrics.observe_turn(timings, job.source)
            if job.future is not None:
                job.future.set_result(result)
        except Exception as exc:  # one bad utterance must not stop the daemon
            log.exception("utterance %d failed", uid) if not isinstance(exc, AssistantError) else \
                log.error("utterance %d failed: %s", uid, exc)
            try:
                with self.store.session() as s:
                    repo.fail_utterance(s, utterance_id=uid, error=str(exc))
            except Exception:
                log.exception("could not record the failure of utterance %d", uid)
            self._publish("utterance_failed", utterance_id=uid, error=str(exc))
            if self._metrics is not None:
                self._metrics.count("failed")
            if job.future is not None and not job.future.done():
                job.future.set_exception(exc)
