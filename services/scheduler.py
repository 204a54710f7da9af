"""Personalized alignment at idle time: when to run a job, and running it without disturbing inference.

Decision (an asyncio task, every ``poll_s``): one job at a time. A job that a crash left ``running`` is
``paused`` at start; a paused job resumes, and an automatic job is created, only when the user has been
idle ``alignment.idle_s``, the clock is inside ``alignment.window`` and (automatic jobs) at least
``alignment.min_new_labels`` labels arrived since the last job. Jobs asked for through the API/CLI are
``queued`` and start at once (they were requested), still yielding to inference.

Running (a thread): training shares the serving engine's frozen weights. ``daemon.model_lock`` is held
during each training step and released between steps; inference takes it per turn, so it waits at most
one step. Speech starting, an API turn or a queued utterance sets ``daemon.preempt``: the job pauses at
the next step boundary (checkpoint saved) and resumes at the next idle window. The gate then compares
the candidate with the serving bridge; an accepted candidate becomes an immutable version and is
hot-swapped in; a rejected one is kept on disk for inspection.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import shutil
import threading
import time
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)


def in_window(window: str, now: datetime | None = None) -> bool:
    now = now or datetime.now()
    a, b = window.split("-")
    to_min = lambda s: int(s.split(":")[0]) * 60 + int(s.split(":")[1])  # noqa: E731
    start, end, cur = to_min(a), to_min(b), now.hour * 60 + now.minute
    return start <= cur < end if start <= end else (cur >= start or cur < end)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


class Scheduler:
    def __init__(self, daemon, poll_s: float = 1.0) -> None:
        self.daemon, self.poll_s = daemon, poll_s
        self.cfg = daemon.config.alignment
        self.runner: JobRunner | None = None

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
            self.daemon.preempt.set()
            self.runner.join(timeout_s)

    def _recover(self) -> None:
        from assistant.store import repo

        with self.daemon.store.session() as s:
            job = repo.running_or_paused_job(s)
            if job is not None and job.state == "running":
                log.warning("alignment job %d was running when the daemon stopped: paused, will resume", job.id)
                repo.update_job(s, job_id=job.id, state="paused")

    def _idle_enough(self) -> bool:
        w = self.daemon.worker
        if w is None or w.depth or w.busy_since is not None:  # inference first: never start over a backlog
            return False
        return time.time() - self.daemon.last_activity >= self.cfg.idle_s and in_window(self.cfg.window)

    async def _tick(self) -> None:
        if self.runner is not None and self.runner.is_alive():
            return
        self.runner = None
        job = await asyncio.to_thread(self._next_job)
        if job is None:
            return
        self.daemon.preempt.clear()
        self.runner = JobRunner(self.daemon, job)
        self.runner.start()

    def _next_job(self) -> int | None:
        from assistant.store import repo

        if not self.cfg.enabled:
            return None
        with self.daemon.store.session(write=False) as s:
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
        with self.daemon.store.session() as s:
            job = repo.create_job(s, method=self.cfg.method, trigger="idle")
            log.info("idle for %.0f s with %d new labels: alignment job %d", time.time() - self.daemon.last_activity,
                     new, job.id)
            return job.id


class JobRunner(threading.Thread):
    def __init__(self, daemon, job_id: int) -> None:
        super().__init__(name=f"align-{job_id}", daemon=True)
        self.daemon, self.job_id = daemon, job_id
        self.cfg = daemon.config.alignment
        self._holding = False

    # --- sharing the models with inference ------------------------------------------------------------
    def _should_pause(self) -> bool:
        """Called by the recipe between steps: release the models, then decide; re-take them to go on."""
        if self._holding:
            self.daemon.model_lock.release()
            self._holding = False
        if self.daemon.preempt.is_set() or self._cancel_requested():
            return True
        self.daemon.model_lock.acquire()
        self._holding = True
        return False

    def _cancel_requested(self) -> bool:
        from assistant.store import repo

        with self.daemon.store.session(write=False) as s:
            return bool(repo.get_job(s, job_id=self.job_id).cancel_requested)

    def _update(self, **fields) -> None:
        from assistant.store import repo

        with self.daemon.store.session() as s:
            repo.update_job(s, job_id=self.job_id, **fields)
        if "state" in fields or "progress" in fields:
            self.daemon.bus.publish("job", job_id=self.job_id, **{k: v for k, v in fields.items()
                                                                 if k in ("state", "progress", "step", "error")})

    # --- the job ------------------------------------------------------------------------------------------
    def run(self) -> None:
        from assistant.store import repo

        with self.daemon.store.session(write=False) as s:
            job = repo.get_job(s, job_id=self.job_id)
            method, checkpoint, started = job.method, job.checkpoint_path, job.started_at
        try:
            self._update(state="running", **({} if started else {"started_at": _now()}))
            self._run(method, checkpoint)
        except Exception as exc:  # noqa: BLE001 - recorded on the job; the daemon goes on
            log.exception("alignment job %d failed", self.job_id)
            self._update(state="failed", error=f"{type(exc).__name__}: {exc}", finished_at=_now())
        finally:
            if self._holding:
                self.daemon.model_lock.release()
                self._holding = False

    def _run(self, method: str, checkpoint: str | None) -> None:
        from assistant.alignment import gate, registry
        from assistant.alignment.data import load_labelled
        from assistant.alignment.trainers import make_recipe, recipe_options, resolve_method, settings_for
        from assistant.errors import ModelFilesError

        d, engine = self.daemon, self.daemon.worker.engine
        t0, rss0, peak0 = time.time(), rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with d.model_lock:  # the re-encode fallback runs the shared encoder
            data = load_labelled(d.store, d.data_dir, encoder=engine.encoder, heldout_share=self.cfg.heldout_share)
        self._update(data_counts=data.summary())
        if len(data.train) < 2:
            self._update(state="rejected", finished_at=_now(),
                         error=f"only {len(data.train)} labelled training utterances: record enrollment prompts")
            return
        parent = engine.bridge
        c = self.cfg
        method = resolve_method(method, bridge_kind=parent.kind, encoder_has_ctc=engine.encoder.ctc_head is not None,
                                personal_head=c.personal_head)
        options = recipe_options(method, c)
        recipe = make_recipe(method, **options)
        replay = _replay_set(engine) if c.replay_share > 0 else []
        settings = settings_for(c, method, seed=self.job_id, replay=replay)
        job_dir = d.data_dir / "jobs" / str(self.job_id)
        with d.model_lock:
            try:
                recipe.setup(engine, parent, data.train, settings,
                             resume_from=d.data_dir / checkpoint if checkpoint else None)
            except ModelFilesError as exc:
                if not checkpoint:
                    raise
                # e.g. labels arrived while paused: the checkpoint belongs to another training set
                log.warning("alignment job %d cannot resume (%s); training again from the start", self.job_id, exc)
                recipe = make_recipe(method, **options)
                recipe.setup(engine, parent, data.train, settings)

        def progress(p) -> None:
            if p.step % 5 == 0 or p.step == p.total:
                self._update(progress=min(1.0, p.step / max(p.total, 1)), step=p.step, total_steps=p.total)

        outcome = recipe.train(should_pause=self._should_pause, on_progress=progress)
        if self._holding:
            d.model_lock.release()
            self._holding = False
        if outcome == "paused":
            path = recipe.save(job_dir / "checkpoint")
            if self._cancel_requested():
                self._update(state="cancelled", finished_at=_now())
                shutil.rmtree(job_dir, ignore_errors=True)
            else:
                self._update(state="paused", checkpoint_path=str(Path(path).relative_to(d.data_dir)))
                log.info("alignment job %d paused for inference; resumes at the next idle window", self.job_id)
            recipe.cleanup()
            return
        candidate = recipe.result()
        train_s = time.time() - t0
        generic = _generic_set(engine)
        if c.lexicon_bonus > 0 or c.lexicon_spotting:  # the user's names and places, from training labels only
            from assistant.alignment.lexicon import personal_lexicon, with_lexicon

            words = personal_lexicon([e.text for e in data.train],
                                     [g.text for g in [*generic, *(replay or _replay_set(engine))]],
                                     vocabulary=engine.vocabulary)
            candidate = with_lexicon(candidate, words, c.lexicon_bonus, spotting=c.lexicon_spotting,
                                     spot_margin=c.lexicon_spot_margin)
        candidates = [candidate]
        if c.voice_routing == "auto":  # also gate it serving only the user's voice; keep the better that passes
            candidates += _voice_routed(candidate, data.train, replay or _replay_set(engine))
        # The gate decodes a few hundred utterances: it takes the models one utterance at a time.
        chosen, result = gate.choose(_Locked(engine, d.model_lock), active=parent, candidates=candidates,
                                     heldout=data.heldout, generic=generic, config=self.cfg)
        candidate = candidates[chosen]
        extra_mb = max(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - max(peak0, rss0))
        version = registry.next_version(d.store)
        metrics = result.to_json()
        path = registry.write_version(candidate, d.data_dir, version, parent_version=parent.version, metrics=metrics,
                                      training={**(candidate.config.training or {}), "method": method,
                                                "job_id": self.job_id},
                                      data_summary=data.summary())
        registry.record_version(d.store, version=version, path=path, bridge_config=candidate.config,
                                status="accepted" if result.accepted else "rejected", metrics=metrics,
                                data_summary=data.summary(), job_id=self.job_id, parent_version=parent.version)
        recipe.cleanup()
        if result.accepted:
            fut = asyncio.run_coroutine_threadsafe(_activate(d, version), d.loop)
            fut.result(timeout=120)
        self._update(state="succeeded" if result.accepted else "rejected", finished_at=_now(),
                     candidate_version=version, metrics=metrics, progress=1.0, peak_rss_mb=round(extra_mb, 1),
                     durations={"train_s": round(train_s, 2), "total_s": round(time.time() - t0, 2),
                                "serving_rss_mb": round(rss0, 1), "job_extra_rss_mb": round(extra_mb, 1)},
                     error=None if result.accepted else result.reason)
        log.info("alignment job %d: %s (%s)", self.job_id, "accepted" if result.accepted else "rejected",
                 result.reason)
        shutil.rmtree(job_dir, ignore_errors=True)  # the checkpoint only mattered while the job could resume


class _Locked:
    """The engine, with each transcription taken under the shared model lock."""

    def __init__(self, engine, lock: threading.Lock) -> None:
        self._engine, self._lock = engine, lock

    def transcribe_encoded(self, *args, **kwargs):
        with self._lock:
            return self._engine.transcribe_encoded(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._engine, name)


async def _activate(daemon, version: str) -> None:
    from services.bridges import activate

    await activate(daemon, version)
    daemon.bus.publish("bridge_activated", version=version)


def _voice_routed(candidate, train, replay) -> list:
    """A copy of ``candidate`` with voice routing, centroids from the training and replay utterances
    (``trainers.base.routed_by_voice``); none when it has no personal head or there is no replay set."""
    import copy

    from assistant.alignment.trainers.base import routed_by_voice
    from assistant.engine.bridge import CtcBridge
    from assistant.engine.checkpoint import LoadedBridge

    m = candidate.module
    if not (isinstance(m, CtcBridge) and m.owns_head and replay and train) or candidate.config.voice_routing:
        return []
    twin = LoadedBridge(module=copy.deepcopy(m), config=candidate.config)
    return [routed_by_voice(twin, [e.encoded.features for e in train], [r.encoded.features for r in replay])]


def _generic_set(engine):
    from assistant.alignment.regression import load_regression_set

    bundle = engine.bundle
    if bundle is None or not (bundle.root / "regression").is_dir():
        return []
    return load_regression_set(bundle.root / "regression", encoder_id=engine.encoder.identity,
                               ctc_head=engine.encoder.ctc_head)


def _replay_set(engine) -> list:
    """Generic utterances shipped with the bundle (``<bundle>/replay``: training voices, never the gate's
    regression set) mixed into training batches against forgetting; none when the bundle has none."""
    from assistant.alignment.regression import load_regression_set

    bundle = engine.bundle
    if bundle is None or not (bundle.root / "replay").is_dir():
        return []
    return load_regression_set(bundle.root / "replay", encoder_id=engine.encoder.identity,
                               ctc_head=engine.encoder.ctc_head)


def _now():
    from datetime import timezone

    return datetime.now(timezone.utc)
