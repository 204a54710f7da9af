"""The quality gate: a candidate bridge replaces the active one only if it measurably helps this user
and does not break generic speech.

Both bridges are scored on the same data: the user's held-out utterances (never trained on, see
``data.split_of``) and the bundle's generic regression set. Only bridge + LLM run (the inputs are
cached encoder outputs). Decoding is speculative with the CTC draft, which yields exactly the greedy
output (``engine.decode``), only faster, so the gate measures what serving will produce.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol, Sequence

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


def wer_of(engine: "Engine", bridge: "LoadedBridge", items: Sequence[Scored]) -> ErrorRate:
    """Corpus WER of ``bridge`` on ``items`` (through ``engine``'s LLM; call it from the thread that owns
    the engine). Raises ValueError on an empty set: a WER of nothing is undefined."""
    if not items:
        raise ValueError("no utterances to score")
    param = next(bridge.module.parameters(), None)
    device = param.device if param is not None else engine.llm.device
    hyps = [engine.transcribe_encoded(_on(it.encoded, device), it.duration_s, bridge=bridge, speculative=True)[0]
            for it in items]
    return wer([it.text for it in items], hyps)


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


def evaluate(engine: "Engine", *, active: "LoadedBridge", candidate: "LoadedBridge", heldout: Sequence[Scored],
             generic: Sequence[Scored] | None, config: "AlignmentConfig") -> GateResult:
    """Score both bridges on the held-out user set and the generic set, then ``decide``."""
    heldout_n, generic_n = len(heldout), len(generic or ())
    user_before = user_after = float("nan")
    if heldout_n:  # even below min_heldout the numbers are worth showing the user
        user_before = wer_of(engine, active, heldout).rate
        user_after = wer_of(engine, candidate, heldout).rate
    generic_before = generic_after = None
    if generic and heldout_n >= config.min_heldout:  # the decision is already "reject" otherwise
        generic_before = wer_of(engine, active, generic).rate
        generic_after = wer_of(engine, candidate, generic).rate
    accepted, reason = decide(user_before=user_before, user_after=user_after, generic_before=generic_before,
                              generic_after=generic_after, heldout_n=heldout_n, min_heldout=config.min_heldout,
                              min_improvement=config.min_improvement, generic_tolerance=config.generic_tolerance)
    log.info("gate %s -> %s: %s (%s)", active.version, candidate.version, "accepted" if accepted else "rejected",
             reason)
    return GateResult(accepted=accepted, reason=reason, user_wer_before=user_before, user_wer_after=user_after,
                      generic_wer_before=generic_before, generic_wer_after=generic_after, heldout_n=heldout_n,
                      generic_n=generic_n)
