"""Bridge trainers for personalised alignment: recipes that fine-tune only the bridge on cached features.

``make_recipe(method)`` builds one; every recipe follows ``base.Recipe`` (setup / train / save / result /
cleanup). Methods:

- ``backprop``: transcript loss through the frozen LLM, AdamW (backprop.py);
- ``zo``: MeZO-style SPSA with AdaZeta's query schedule, forward passes only (zo.py; optional TT adapter);
- ``embed``: match the LLM's input embeddings of the transcript, no LLM forward (embed.py);
- ``embed+backprop``: embed for half the steps, then backprop (combo.py);
- ``ctc``: the personal CTC head and adapter alone, CTC loss, no LLM forward (ctc.py);
- ``default``: ``DEFAULT_METHOD`` (backprop); the daemon's ``[alignment]`` defaults add the personal CTC
  head, a 0.1x rate for the parent's weights, an anchor and replay (bench/personalize.py ``head``: the best
  quality per second measured, see docs/ARCHITECTURE.md "Method choice").
"""

from __future__ import annotations

from typing import Any

from assistant.alignment.trainers.backprop import BackpropRecipe
from assistant.alignment.trainers.base import LabelledExample, Progress, Recipe, TrainSettings
from assistant.alignment.trainers.combo import SequentialRecipe
from assistant.alignment.trainers.ctc import CtcRecipe
from assistant.alignment.trainers.embed import EmbedRecipe
from assistant.alignment.trainers.zo import ZeroOrderRecipe

METHODS = ("default", "backprop", "zo", "embed", "embed+backprop", "ctc")
DEFAULT_METHOD = "backprop"  # with the [alignment] defaults: bench/personalize.py "head"
FALLBACK_METHOD = "backprop"  # "default" on a bridge that cannot own a personal head


def resolve_method(method: str, *, bridge_kind: str, encoder_has_ctc: bool, personal_head: bool) -> str:
    """``default`` -> the method it stands for with this bridge: ``DEFAULT_METHOD`` where the bridge can
    grow a personal CTC head (a ctc bridge, an encoder with a CTC head, ``personal_head`` on), else
    ``FALLBACK_METHOD``; any other method as it is."""
    if method != "default":
        return method
    if DEFAULT_METHOD == "ctc" and not (personal_head and bridge_kind == "ctc" and encoder_has_ctc):
        return FALLBACK_METHOD
    return DEFAULT_METHOD


def make_recipe(method: str, **options: Any) -> Recipe:
    """A fresh recipe for ``method``; ``options`` go to the recipe's constructor
    (backprop / embed+backprop: ``gradient_checkpointing``; zo: ``eps``, ``alpha``, ``beta``, ``q_max``,
    ``tt_rank``, ``learning_rate``)."""
    if method == "default":
        method = DEFAULT_METHOD
    if method == "backprop":
        return BackpropRecipe(**options)
    if method == "zo":
        return ZeroOrderRecipe(**options)
    if method == "embed":
        return EmbedRecipe(**options)
    if method == "ctc":
        return CtcRecipe(**options)
    if method == "embed+backprop":
        return SequentialRecipe("embed+backprop", [(EmbedRecipe(), 0.5), (BackpropRecipe(**options), 0.5)])
    raise ValueError(f"unknown alignment method {method!r}; allowed: {', '.join(METHODS)}")


__all__ = ["METHODS", "DEFAULT_METHOD", "FALLBACK_METHOD", "resolve_method", "make_recipe", "Recipe", "TrainSettings", "Progress", "LabelledExample",
           "BackpropRecipe", "ZeroOrderRecipe", "EmbedRecipe", "SequentialRecipe", "CtcRecipe"]
