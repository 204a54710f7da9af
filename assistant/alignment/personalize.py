"""The personalization job as one function of engine, data and settings (shaped like torchtune's recipes).

``personalize(engine, data, config, method=..., seed=...)`` checks its preconditions, trains a candidate
bridge on the user's labelled utterances (resuming a checkpoint when given one), adds the user's own
words (lexicon, word spotting), makes the voice-routed twin when routing is ``auto``, and gates the
variants against the active bridge on the user's held-out speech and generic speech. It returns an
``Outcome``; it starts no thread and touches no store and no network. The daemon's scheduler decides
*when* it runs (services/scheduler.py: idle windows, preemption, job rows, versions, the hot-swap);
``bench/personalize.py`` and ``bench/gpu_check.py`` call the same function.

Sharing the models with inference is one parameter, ``models``: a context manager (the daemon's model
lock) held while the recipe sets up, during each training step (released between steps, when
``should_pause`` is asked) and while the gate decodes one utterance. ``score`` replaces the gate's
scorer (tests force a decision with it).
"""

from __future__ import annotations

import copy
import logging
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from assistant.alignment import gate
from assistant.alignment.data import LabelledSet, labels_needed
from assistant.errors import ModelFilesError

if TYPE_CHECKING:
    from assistant.config import AlignmentConfig
    from assistant.engine.checkpoint import LoadedBridge
    from assistant.engine.engine import Engine

log = logging.getLogger(__name__)

TRAINING, GATING = "training", "gating"
PAUSED, ACCEPTED, REJECTED, TRAINED = "paused", "accepted", "rejected", "trained"


@dataclass(frozen=True)
class JobProgress:
    """Where a job is: ``phase`` training (``done`` steps of ``total``) or gating (utterances decoded)."""

    phase: str
    done: int
    total: int

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / max(self.total, 1))


@dataclass(frozen=True)
class Outcome:
    """What a job produced. ``state``: paused (``checkpoint`` written), accepted or rejected by the gate
    (``candidate``: the variant it kept), or trained (not gated: ``gated=False``); a job rejected before
    training (``candidate`` None) names the missing data in ``reason``. ``variants``: every way of serving
    the trained bridge that was (or would have been) gated."""

    state: str
    method: str
    reason: str
    candidate: "LoadedBridge | None" = None
    variants: tuple = ()
    gate: gate.GateResult | None = None
    routed: bool = False
    checkpoint: Path | None = None
    train_s: float = 0.0
    gate_s: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.state == ACCEPTED


def shortfall(data: LabelledSet, config: "AlignmentConfig", *, gated: bool = True) -> str | None:
    """Why ``data`` cannot give a (gated) job (checked before any training), or None when it can."""
    n = len(data.train) + len(data.heldout)
    more = max(0, labels_needed(config) - n)
    what = f"about {more} more utterance{'s' if more != 1 else ''}" if more else "a few more utterances"
    hint = f"label {what} (assistant enroll, or correct transcripts)"
    if len(data.train) < 2:
        return f"only {_count(len(data.train), 'labelled training utterance')} of {n} labelled; {hint}"
    if gated and len(data.heldout) < config.min_heldout:
        return (f"only {_count(len(data.heldout), 'held-out utterance')} of {n} labelled; the gate needs "
                f"{config.min_heldout} (alignment.min_heldout); {hint}")
    return None


def unfit(engine: "Engine", config: "AlignmentConfig", method: str) -> str | None:
    """Why the resolved ``method`` cannot train the serving bridge (checked before training), or None.
    A text-input ctc bridge hands the LLM text: only its personal head (``ctc``) learns; a bridge without
    weights of its own is trained only through a personal head."""
    parent = engine.bridge
    if method != "ctc" and getattr(parent.module, "text_input", False):
        return (f"method {method!r} trains the bridge through the LLM's input, but the serving bridge "
                f"{parent.version} hands the LLM text (the transcript is its CTC reading): use 'ctc' or 'default'")
    if next(parent.module.parameters(), None) is not None:
        return None
    if parent.kind == "ctc" and engine.encoder.ctc_head is not None and config.personal_head:
        return None
    return (f"the serving bridge {parent.version} has no weights of its own to train, and no personal head "
            "can grow on it: set alignment.personal_head = true (a ctc bridge on an encoder with a CTC head)")


def wants_top(engine: "Engine", config: "AlignmentConfig", method: str) -> bool:
    """Whether the job trains a personal top: asked for (``personal_top``, with a personal head), the
    ``ctc`` method on a ctc bridge, and an encoder that offers one (engine/whisper.py); or the serving
    bridge owns one already (its candidate keeps training it)."""
    if getattr(engine.bridge.module, "owns_top", False):
        return True
    return bool(config.personal_top and config.personal_head and method == "ctc" and engine.bridge.kind == "ctc"
                and engine.encoder.top_layers)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def bundle_set(engine: "Engine", name: str) -> list:
    """A generic set shipped in the bundle (``regression``: the gate's; ``replay``: training voices mixed
    into batches against forgetting); empty when the bundle has none."""
    from assistant.alignment.regression import load_regression_set

    bundle = engine.bundle
    if bundle is None or not (bundle.root / name).is_dir():
        return []
    return load_regression_set(bundle.root / name, encoder_id=engine.encoder.identity,
                               ctc_head=engine.encoder.ctc_head)


def voice_routed(candidate: "LoadedBridge", train: Sequence, replay: Sequence) -> list["LoadedBridge"]:
    """A copy of ``candidate`` with voice routing (centroids from the training and replay utterances,
    ``trainers.base.routed_by_voice``); none when it has no personal head or there is no replay set."""
    from assistant.alignment.trainers.base import routed_by_voice
    from assistant.engine.bridge import CtcBridge
    from assistant.engine.checkpoint import LoadedBridge

    m = candidate.module
    if not (isinstance(m, CtcBridge) and m.owns_head and replay and train) or candidate.config.voice_routing:
        return []
    twin = LoadedBridge(module=copy.deepcopy(m), config=candidate.config)
    return [routed_by_voice(twin, [e.encoded.features for e in train], [r.encoded.features for r in replay])]


def personalize(engine: "Engine", data: LabelledSet, config: "AlignmentConfig", *, method: str, seed: int,
                score: gate.Score | None = None, should_pause: Callable[[], bool] = lambda: False,
                on_progress: Callable[[JobProgress], None] | None = None, resume_from: Path | None = None,
                checkpoint_to: Path | None = None, models: AbstractContextManager | None = None,
                generic: Sequence | None = None, replay: Sequence | None = None, gated: bool = True) -> Outcome:
    """Train, add the user's words, gate. ``method`` as configured (``default`` resolves here);
    ``score`` defaults to the serving decode on ``engine``; ``generic`` / ``replay`` default to the
    bundle's sets. A pause (``should_pause`` true) saves a checkpoint to ``checkpoint_to``. ``gated=False``
    (benchmarks that score on their own test set) stops before the gate."""
    from assistant.alignment.trainers import make_recipe, recipe_options, resolve_method, settings_for

    models = models if models is not None else nullcontext()
    report = on_progress or (lambda p: None)
    parent = engine.bridge
    method = resolve_method(method, bridge_kind=parent.kind, encoder_has_ctc=engine.encoder.ctc_head is not None,
                            personal_head=config.personal_head)
    missing = unfit(engine, config, method) or shortfall(data, config, gated=gated)
    if missing is not None:
        return Outcome(state=REJECTED, method=method, reason=missing, summary=data.summary())
    top = wants_top(engine, config, method)
    if top:  # the personal top reads lower states, which the bundle's sets do not hold (spoken.py)
        from assistant.alignment.spoken import spoken_set

        generic = list(generic) if generic is not None else spoken_set(engine, "regression", models=models)
        replay = list(replay) if replay is not None else spoken_set(engine, "replay", models=models)
    replay = list(replay) if replay is not None else bundle_set(engine, "replay")
    generic = list(generic) if generic is not None else bundle_set(engine, "regression")
    settings = settings_for(config, method, seed=seed, replay=replay if config.replay_share > 0 else [],
                            personal_top=top)
    t0 = time.perf_counter()
    recipe = make_recipe(method, **recipe_options(method, config))
    with models:
        try:
            recipe.setup(engine, parent, data.train, settings, resume_from=resume_from)
        except ModelFilesError as exc:
            if resume_from is None:
                raise
            # e.g. labels arrived while paused: the checkpoint belongs to another training set
            log.warning("cannot resume from %s (%s); training again from the start", resume_from, exc)
            recipe = make_recipe(method, **recipe_options(method, config))
            recipe.setup(engine, parent, data.train, settings)
    holding = False

    def between_steps() -> bool:  # the models are free between steps; held during one
        nonlocal holding
        if holding:
            models.__exit__(None, None, None)
            holding = False
        if should_pause():
            return True
        models.__enter__()
        holding = True
        return False

    try:
        try:
            state = recipe.train(should_pause=between_steps,
                                 on_progress=lambda p: report(JobProgress(TRAINING, p.step, p.total)))
        finally:
            if holding:
                models.__exit__(None, None, None)
        if state == PAUSED:
            if checkpoint_to is None:
                raise ValueError("the job paused but has no checkpoint_to directory")
            path = recipe.save(checkpoint_to)
            return Outcome(state=PAUSED, method=method, reason="paused for inference", checkpoint=Path(path),
                           train_s=time.perf_counter() - t0, summary=data.summary())
        candidate = recipe.result()
    finally:
        recipe.cleanup()
    train_s = time.perf_counter() - t0
    active = parent
    if config.lexicon_bonus > 0 or config.lexicon_spotting:  # the user's names and places, from training labels
        from assistant.alignment.lexicon import personal_lexicon, words_only

        words = personal_lexicon([e.text for e in data.train], [g.text for g in [*generic, *replay]],
                                 vocabulary=engine.vocabulary)
        candidate = words_only(candidate, words, config)
        # the serving bridge may already spot the words of every label, held-out ones included: the gate
        # compares both with the training labels' words, so it measures what training did
        active = words_only(parent, words, config)
    candidates = [candidate]
    if config.voice_routing == "auto":  # also gate it serving only the user's voice; keep the better that passes
        candidates += voice_routed(candidate, data.train, replay)
    if not gated:
        return Outcome(state=TRAINED, method=method, reason="not gated", candidate=candidate,
                       variants=tuple(candidates), train_s=train_s, summary=data.summary())
    total = gate.decodes(len(candidates), len(data.heldout), len(generic), config.min_heldout)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if done % 10 == 0 or done == total:
            report(JobProgress(GATING, done, total))

    report(JobProgress(GATING, 0, total))
    t1 = time.perf_counter()
    scoring = score or gate.scorer(engine, lock=models, on_item=tick)
    chosen, result = gate.choose(scoring, active=active, candidates=candidates, heldout=data.heldout,
                                 generic=generic, config=config)
    kept = candidates[chosen]
    return Outcome(state=ACCEPTED if result.accepted else REJECTED, method=method, reason=result.reason,
                   candidate=kept, variants=tuple(candidates), gate=result, routed=bool(kept.config.voice_routing),
                   train_s=train_s, gate_s=time.perf_counter() - t1, summary=data.summary())
