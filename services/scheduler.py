"""Personalization at idle time: *when* a job runs, and running it without disturbing inference.

What a job does is one library function, ``assistant.alignment.personalize.personalize``; this module
only decides when it runs and records what it did.

Decision (an asyncio task, every ``poll_s``): one job at a time. A job that a crash left ``running`` is
``paused`` at start; a paused job resumes, and an automatic job is created, only when the user has been
idle ``alignment.idle_s``, the clock is inside ``alignment.window`` and (automatic jobs) at least
``alignment.min_new_labels`` labels arrived since the last job. Jobs asked for through the API/CLI are
``queued`` and start at once (they were requested), still yielding to inference.

Running (a thread): training shares the serving engine's frozen weights through the model lock, which
the job holds during one training step or one gate decode and releases in between; inference takes it
per turn, so it waits at most one step. Speech starting, an API turn or a queued utterance sets
``preempt``: the job pauses at the next step boundary (checkpoint saved) and resumes at the next idle
window. An accepted candidate becomes an immutable version and is hot-swapped in with one call on the
inference thread; a rejected one is kept on disk for inspection.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import shutil
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from assistant.config import AlignmentConfig
    from assistant.engine.engine import Engine
    from assistant.store import Store

log = logging.getLogger(__name__)
ACTIVATE_TIMEOUT_S = 120.0  # the inference thread finishes the utterance it is on first


@dataclass(frozen=True)
class JobContext:
    """What the scheduler and its jobs need of the daemon, and nothing else."""

    config: "AlignmentConfig"
    store: "Store"
    data_dir: Path
    engine: Callable[[], "Engine"]  # the serving engine: run its models only under model_lock or on its thread
    on_engine: Callable[[Callable[["Engine"], Any]], Future]  # run a function on the inference thread
    model_lock: threading.Lock
    preempt: threading.Event  # set by any user activity: a running job pauses
    publish: Callable[..., None]  # the event bus (thread-safe)
    idle_s: Callable[[], float]  # seconds since the last user activity
    inference_busy: Callable[[], bool]  # an utterance queued or being decoded
    clock: Callable[[], datetime] = datetime.now


def in_window(window: str, now: datetime) -> bool:
    a, b = window.split("-")
    to_min = lambda s: int(s.split(":")[0]) * 60 + int(s.split(":")[1])  # noqa: E731
    start, end, cur = to_min(a), to_min(b), now.hour * 60 + now.minute
    return start <= cur < end if start <= end else (cur >= start or cur < end)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class UserWords:
    """The serving bridge spots the words of every label (the user's contacts and places) from the moment
    a label names them, with no training: ``alignment.spot_user_words``. Checked on each scheduler tick
    while no job runs; the label texts are read again only when their count changed, and the bridge is
    swapped (on the inference thread) only when its words differ, e.g. after a job's bridge came in."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self._labels = -1
        self._words: tuple[str, ...] = ()
        self._refused: tuple[str, ...] | None = None

    def refresh(self) -> bool:
        """Bring the serving bridge's words up to date; True when it swapped."""
        from assistant.alignment.lexicon import personal_lexicon, words_only
        from assistant.store import repo

        cfg, engine = self.ctx.config, self.ctx.engine()
        if not (cfg.spot_user_words and cfg.lexicon_spotting and engine.vocabulary):
            return False  # without the bundle's vocabulary no word can be told to be the user's own
        with self.ctx.store.session(write=False) as s:
            n = repo.count_labels_since(s)
            if n != self._labels:
                self._words = personal_lexicon(repo.label_texts(s), (), vocabulary=engine.vocabulary)
                self._labels = n
        want = words_only(engine.bridge, self._words, cfg).config
        have = engine.bridge.config
        if (have.lexicon, have.lexicon_spotting) == (want.lexicon, want.lexicon_spotting):
            return False
        words = self._words
        if words == self._refused:
            return False
        try:
            self.ctx.on_engine(lambda e: e.swap_bridge(words_only(e.bridge, words, cfg))).result(ACTIVATE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the bridge serves on without them; not retried for these words
            self._refused = words
            log.warning("the serving bridge cannot take the user's %d words: %s", len(words), exc)
            return False
        log.info("the serving bridge spots %d words of the user's labels", len(words))
        self.ctx.publish("user_words", count=len(words))
        return True


class Scheduler:
    def __init__(self, ctx: JobContext, poll_s: float = 1.0) -> None:
        self.ctx, self.poll_s = ctx, poll_s
        self.cfg = ctx.config
        self.runner: JobRunner | None = None
        self.words = UserWords(ctx)

    async def run(self) -> None:
        await asyncio.to_thread(self._recover)
        while True:
            try:
                await self._tick()
            except Exception:  # the scheduler must outlive any one bad decision
                log.exception("alignment scheduler tick failed")
            await asyncio.sleep(self.poll_s)

    def stop(self, timeout_s: float) -> None:
        """Shutdown: a running job pauses (checkpoint saved) so the next start resumes it."""
        if self.runner is not None and self.runner.is_alive():
            self.ctx.preempt.set()
            self.runner.join(timeout_s)

    def _recover(self) -> None:
        from assistant.store import repo

        with self.ctx.store.session() as s:
            job = repo.running_or_paused_job(s)
            if job is not None and job.state == "running":
                log.warning("alignment job %d was running when the daemon stopped: paused, will resume", job.id)
                repo.update_job(s, job_id=job.id, state="paused")

    def _idle_enough(self) -> bool:
        if self.ctx.inference_busy():  # inference first: never start over a backlog
            return False
        return self.ctx.idle_s() >= self.cfg.idle_s and in_window(self.cfg.window, self.ctx.clock())

    async def _tick(self) -> None:
        if self.runner is not None and self.runner.is_alive():
            return
        self.runner = None
        await asyncio.to_thread(self.words.refresh)
        job = await asyncio.to_thread(self._next_job)
        if job is None:
            return
        self.ctx.preempt.clear()
        self.runner = JobRunner(self.ctx, job)
        self.runner.start()

    def _next_job(self) -> int | None:
        from assistant.store import repo

        if not self.cfg.enabled:
            return None
        with self.ctx.store.session(write=False) as s:
            job = repo.running_or_paused_job(s)
            if job is not None:
                if job.state == "queued" and job.cancel_requested:
                    return None
                if job.state == "queued" and job.trigger in ("api", "cli"):
                    return job.id
                return job.id if self._idle_enough() else None
            if not self._idle_enough():
                return None
            last = next((j for j in repo.list_jobs(s, limit=50)
                         if j.state in ("succeeded", "rejected", "failed", "cancelled")), None)
            new = repo.count_labels_since(s, after=last.created_at if last else None)
        if new < max(1, self.cfg.min_new_labels):
            return None
        with self.ctx.store.session() as s:
            job = repo.create_job(s, method=self.cfg.method, trigger="idle")
            log.info("idle for %.0f s with %d new labels: alignment job %d", self.ctx.idle_s(), new, job.id)
            return job.id


class JobRunner(threading.Thread):
    def __init__(self, ctx: JobContext, job_id: int) -> None:
        super().__init__(name=f"align-{job_id}", daemon=True)
        self.ctx, self.job_id = ctx, job_id

    def _should_pause(self) -> bool:
        return self.ctx.preempt.is_set() or self._cancel_requested()

    def _cancel_requested(self) -> bool:
        from assistant.store import repo

        with self.ctx.store.session(write=False) as s:
            return bool(repo.get_job(s, job_id=self.job_id).cancel_requested)

    def _update(self, **fields) -> None:
        from assistant.store import repo

        with self.ctx.store.session() as s:
            repo.update_job(s, job_id=self.job_id, **fields)
        if fields.keys() & {"state", "progress", "phase"}:
            self.ctx.publish("job", job_id=self.job_id, **{k: v for k, v in fields.items()
                                                          if k in ("state", "progress", "phase", "step", "error")})

    def run(self) -> None:
        from assistant.store import repo

        with self.ctx.store.session(write=False) as s:
            job = repo.get_job(s, job_id=self.job_id)
            method, checkpoint, started = job.method, job.checkpoint_path, job.started_at
        try:
            self._update(state="running", **({} if started else {"started_at": _now()}))
            self._run(method, checkpoint)
        except Exception as exc:  # noqa: BLE001 - recorded on the job; the daemon goes on
            log.exception("alignment job %d failed", self.job_id)
            self._update(state="failed", error=f"{type(exc).__name__}: {exc}", finished_at=_now())
        finally:  # what the job's data, spoken sets and gate freed goes back to the system, not the heap
            from assistant.alignment.trainers.base import release_memory

            release_memory()

    def _run(self, method: str, checkpoint: str | None) -> None:
        from assistant.alignment import registry
        from assistant.alignment.data import load_labelled
        from assistant.alignment.personalize import PAUSED, JobProgress, personalize

        c, cfg = self.ctx, self.ctx.config
        engine = c.engine()
        t0, rss0, peak0 = time.time(), rss_mb(), _peak_mb()
        with c.model_lock:  # the re-encode fallback runs the shared encoder
            data = load_labelled(c.store, c.data_dir, encoder=engine.encoder, heldout_share=cfg.heldout_share)
        self._update(data_counts=data.summary())
        parent = engine.bridge
        job_dir = c.data_dir / "jobs" / str(self.job_id)
        last_phase = [None]

        def progress(p: JobProgress) -> None:
            # step / total_steps count training steps; while gating, progress is the gate's alone
            if p.phase != last_phase[0] or p.done % 5 == 0 or p.done == p.total:
                last_phase[0] = p.phase
                steps = {"step": p.done, "total_steps": p.total} if p.phase == "training" else {}
                self._update(phase=p.phase, progress=round(p.fraction, 4), **steps)

        outcome = personalize(engine, data, cfg, method=method, seed=self.job_id, should_pause=self._should_pause,
                              on_progress=progress, models=c.model_lock, checkpoint_to=job_dir / "checkpoint",
                              resume_from=c.data_dir / checkpoint if checkpoint else None)
        if outcome.state == PAUSED:
            if self._cancel_requested():
                self._update(state="cancelled", finished_at=_now())
                shutil.rmtree(job_dir, ignore_errors=True)
            else:
                self._update(state="paused",
                             checkpoint_path=str(Path(outcome.checkpoint).relative_to(c.data_dir)))
                log.info("alignment job %d paused for inference; resumes at the next idle window", self.job_id)
            return
        if outcome.candidate is None:  # rejected before training: not enough labelled data
            self._update(state="rejected", finished_at=_now(), error=outcome.reason)
            log.info("alignment job %d: rejected before training (%s)", self.job_id, outcome.reason)
            return
        extra_mb = max(0.0, _peak_mb() - max(peak0, rss0))
        version = registry.next_version(c.store)
        metrics = outcome.gate.to_json()
        candidate = outcome.candidate
        path = registry.write_version(candidate, c.data_dir, version, parent_version=parent.version, metrics=metrics,
                                      training={**(candidate.config.training or {}), "method": outcome.method,
                                                "job_id": self.job_id},
                                      data_summary=data.summary())
        registry.record_version(c.store, version=version, path=path, bridge_config=candidate.config,
                                status="accepted" if outcome.accepted else "rejected", metrics=metrics,
                                data_summary=data.summary(), job_id=self.job_id, parent_version=parent.version)
        if outcome.accepted:
            from assistant_services.bridges import activate

            c.on_engine(lambda e: activate(c.store, c.data_dir, e, version)).result(timeout=ACTIVATE_TIMEOUT_S)
            c.publish("bridge_activated", version=version, previous=parent.version)
        self._update(state="succeeded" if outcome.accepted else "rejected", finished_at=_now(),
                     candidate_version=version, metrics=metrics, progress=1.0, peak_rss_mb=round(extra_mb, 1),
                     durations={"train_s": round(outcome.train_s, 2), "gate_s": round(outcome.gate_s, 2),
                                "total_s": round(time.time() - t0, 2), "serving_rss_mb": round(rss0, 1),
                                "job_extra_rss_mb": round(extra_mb, 1)},
                     error=None if outcome.accepted else outcome.reason)
        log.info("alignment job %d: %s (%s)", self.job_id, outcome.state, outcome.reason)
        shutil.rmtree(job_dir, ignore_errors=True)  # the checkpoint only mattered while the job could resume


def _now() -> datetime:
    return datetime.now(timezone.utc)
