"""The quality gate: a candidate bridge replaces the active one only if it measurably helps this user
and does not break generic speech.

Both bridges are scored on the same data: the user's held-out utterances (never trained on, see
``data.split_of``) and the bundle's generic regression set. Only bridge + LLM run (the inputs are
cached encoder outputs). Decoding is speculative with the CTC draft, which yields exactly the greedy
output (``engine.decode``), only faster, so the gate measures what serving will produce.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import asdict, dataclass
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

import torch

from assistant.engine.encoder import EncoderOutput
from assistant.metrics import ErrorRate, wer

if TYPE_CHECKING:
    from assistant.config import AlignmentConfig
    from assistant.engine.checkpoint import LoadedBridge
    from assistant.engine.engine import Engine

log = logging.getLogger(__name__)

_EPS = 1e-9  # float noise must not flip a decision on an exact threshold


class Scored(Protocol):
    """An ``data.Example`` or a ``regression.RegressionItem``."""

    @property
    def encoded(self) -> EncoderOutput: ...
    @property
    def text(self) -> str: ...
    @property
    def duration_s(self) -> float: ...


def _on(enc: EncoderOutput, device: torch.device) -> EncoderOutput:
    # Cached outputs are CPU tensors; run_bridge does not move inputs to the bridge's device.
    if enc.features.device == device:
        return enc
    logits = None if enc.ctc_logits is None else enc.ctc_logits.to(device)
    return EncoderOutput(features=enc.features.to(device), ctc_logits=logits, frame_rate_hz=enc.frame_rate_hz)


# How the gate scores a bridge on a set of utterances: corpus WER. ``scorer(engine)`` is the serving
# decode; tests and benchmarks pass their own.
Score = Callable[["LoadedBridge", Sequence[Scored]], ErrorRate]


def scorer(engine: "Engine", *, lock: AbstractContextManager | None = None,
           on_item: Callable[[], None] | None = None) -> Score:
    """Corpus WER through ``engine``'s LLM, decoding as serving does. ``lock`` is taken per utterance (a
    daemon's inference waits at most one utterance); ``on_item`` is called after each (progress)."""
    hold = lock if lock is not None else nullcontext()

    def score(bridge: "LoadedBridge", items: Sequence[Scored]) -> ErrorRate:
        if not items:
            raise ValueError("no utterances to score")
        param = next(bridge.module.parameters(), None)
        device = param.device if param is not None else engine.llm.device
        hyps = []
        for it in items:
            with hold:
                hyps.append(engine.transcribe_encoded(_on(it.encoded, device), it.duration_s, bridge=bridge,
                                                      speculative=True)[0])
            if on_item is not None:
                on_item()
        return wer([it.text for it in items], hyps)

    return score


def wer_of(engine: "Engine", bridge: "LoadedBridge", items: Sequence[Scored]) -> ErrorRate:
    """Corpus WER of ``bridge`` on ``items`` (call it from the thread that owns the engine). Raises
    ValueError on an empty set: a WER of nothing is undefined."""
    return scorer(engine)(bridge, items)


def decodes(n_candidates: int, heldout_n: int, generic_n: int, min_heldout: int) -> int:
    """How many utterances ``choose`` decodes for these sizes: the progress bar's total."""
    sets = heldout_n + (generic_n if generic_n and heldout_n >= min_heldout else 0)
    return sets * (1 + n_candidates)


@dataclass(frozen=True)
class GateResult:
    accepted: bool
    reason: str
    user_wer_before: float  # NaN when there was no held-out utterance to score
    user_wer_after: float
    generic_wer_before: float | None  # None: no generic regression set
    generic_wer_after: float | None
    heldout_n: int
    generic_n: int

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (NaN, which JSON lacks, becomes null)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def decide(*, user_before: float, user_after: float, generic_before: float | None, generic_after: float | None,
           heldout_n: int, min_heldout: int, min_improvement: float,
           generic_tolerance: float) -> tuple[bool, str]:
    """Accept or reject, with a reason naming the numbers it compared."""
    if heldout_n < min_heldout:
        return False, (f"only {heldout_n} held-out utterances; need {min_heldout} for a gate decision "
                       "(label more utterances)")
    if (generic_before is None) != (generic_after is None):
        raise ValueError("generic WER given for one bridge only")
    if math.isnan(user_before) or math.isnan(user_after):
        return False, "the user WER could not be measured"
    if user_before <= 0:
        return False, (f"the active bridge already has {_pct(user_before)} user WER on the held-out set "
                       f"(candidate: {_pct(user_after)}); there is nothing to improve")
    needed = user_before * (1 - min_improvement)
    if user_after > needed + _EPS:
        return False, (f"user WER {_pct(user_before)} -> {_pct(user_after)} on {heldout_n} held-out utterances: "
                       f"not the required {100 * min_improvement:g} % relative cut (needs <= {_pct(needed)})")
    user = f"user WER {_pct(user_before)} -> {_pct(user_after)} on {heldout_n} held-out utterances"
    if generic_before is None or generic_after is None:
        return True, f"{user}; no generic regression set to check"
    allowed = generic_before * (1 + generic_tolerance)
    if generic_after > allowed + _EPS:
        return False, (f"{user}, but generic WER rose {_pct(generic_before)} -> {_pct(generic_after)} "
                       f"(allowed <= {_pct(allowed)}, tolerance {100 * generic_tolerance:g} %)")
    return True, f"{user}; generic WER {_pct(generic_before)} -> {_pct(generic_after)} (allowed <= {_pct(allowed)})"


def evaluate(score: Score, *, active: "LoadedBridge", candidate: "LoadedBridge", heldout: Sequence[Scored],
             generic: Sequence[Scored] | None, config: "AlignmentConfig") -> GateResult:
    """Score both bridges on the held-out user set and the generic set, then ``decide``."""
    return choose(score, active=active, candidates=[candidate], heldout=heldout, generic=generic, config=config)[1]


def choose(score: Score, *, active: "LoadedBridge", candidates: Sequence["LoadedBridge"],
           heldout: Sequence[Scored], generic: Sequence[Scored] | None, config: "AlignmentConfig"
           ) -> tuple[int, GateResult]:
    """Gate several ways of serving one trained candidate (e.g. with and without voice routing) against the
    active bridge, scored once: returns the index of the one to keep and its result. An accepted one
    beats any rejected one; among accepted ones the lower user WER wins, then the lower generic WER, then
    the earlier in the list;
    when none passes, the first is kept (for inspection) with its own reason. The result's reason also
    names how the others scored, so a rejection tells what each variant did."""
    if not candidates:
        raise ValueError("no candidate to gate")
    heldout_n, generic_n = len(heldout), len(generic or ())
    user_before = float("nan")
    if heldout_n:  # even below min_heldout the numbers are worth showing the user
        user_before = score(active, heldout).rate
    score_generic = bool(generic) and heldout_n >= config.min_heldout  # the decision is "reject" otherwise
    generic_before = score(active, generic).rate if score_generic else None  # type: ignore[arg-type]
    results = []
    for cand in candidates:
        user_after = score(cand, heldout).rate if heldout_n else float("nan")
        generic_after = score(cand, generic).rate if score_generic else None  # type: ignore[arg-type]
        accepted, reason = decide(user_before=user_before, user_after=user_after, generic_before=generic_before,
                                  generic_after=generic_after, heldout_n=heldout_n, min_heldout=config.min_heldout,
                                  min_improvement=config.min_improvement, generic_tolerance=config.generic_tolerance)
        results.append(GateResult(accepted=accepted, reason=reason, user_wer_before=user_before,
                                  user_wer_after=user_after, generic_wer_before=generic_before,
                                  generic_wer_after=generic_after, heldout_n=heldout_n, generic_n=generic_n))
    order = sorted(range(len(results)), key=lambda i: (
        not results[i].accepted, _nan_last(results[i].user_wer_after),
        _nan_last(results[i].generic_wer_after if results[i].generic_wer_after is not None else math.nan), i))
    best = order[0] if results[order[0]].accepted else 0
    chosen = results[best]
    if len(results) > 1:
        others = "; ".join(f"{_label(candidates[i])}: {'accepted' if r.accepted else 'rejected'}, user WER "
                           f"{_pct(r.user_wer_after)}" + (f", generic {_pct(r.generic_wer_after)}"
                                                          if r.generic_wer_after is not None else "")
                           for i, r in enumerate(results) if i != best)
        chosen = dataclasses.replace(chosen, reason=f"{_label(candidates[best])}: {chosen.reason} (also tried {others})")
    log.info("gate %s -> %s: %s (%s)", active.version, candidates[best].version,
             "accepted" if chosen.accepted else "rejected", chosen.reason)
    return best, chosen


def _nan_last(x: float) -> float:
    return math.inf if math.isnan(x) else x


def _label(bridge: "LoadedBridge") -> str:
    return "voice-routed" if getattr(bridge.config, "voice_routing", False) else "unrouted"
