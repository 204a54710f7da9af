"""Bridge trainers for personalised alignment: recipes that fine-tune only the bridge on cached features.

``make_recipe(method)`` builds one; every recipe follows ``base.Recipe`` (setup / train / save / result /
cleanup). Methods:

- ``backprop``: transcript loss through the frozen LLM, AdamW (backprop.py);
- ``zo``: MeZO-style SPSA with AdaZeta's query schedule, forward passes only (zo.py; optional TT adapter);
- ``embed``: match the LLM's input embeddings of the transcript, no LLM forward (embed.py);
- ``embed+backprop``: embed for half the steps, then backprop (combo.py);
- ``default``: ``DEFAULT_METHOD``, a placeholder (backprop, no anchor) until the personalisation
  benchmark (bench/personalize.py) picks the method; the lead sets it from the bench results.
"""

from __future__ import annotations

from typing import Any

from assistant.alignment.trainers.backprop import BackpropRecipe
from assistant.alignment.trainers.base import LabelledExample, Progress, Recipe, TrainSettings
from assistant.alignment.trainers.combo import SequentialRecipe
from assistant.alignment.trainers.embed import EmbedRecipe
from assistant.alignment.trainers.zo import ZeroOrderRecipe

METHODS = ("default", "backprop", "zo", "embed", "embed+backprop")
DEFAULT_METHOD = "backprop"  # to be set from bench/personalize.py results


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
    if method == "embed+backprop":
        return SequentialRecipe("embed+backprop", [(EmbedRecipe(), 0.5), (BackpropRecipe(**options), 0.5)])
    raise ValueError(f"unknown alignment method {method!r}; allowed: {', '.join(METHODS)}")


__all__ = ["METHODS", "DEFAULT_METHOD", "make_recipe", "Recipe", "TrainSettings", "Progress", "LabelledExample",
           "BackpropRecipe", "ZeroOrderRecipe", "EmbedRecipe", "SequentialRecipe"]
