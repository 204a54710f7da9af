"""Bridge trainers for personalised alignment: recipes that fine-tune only the bridge on cached features.

``make_recipe(method)`` builds one; every recipe follows ``base.Recipe`` (setup / train / save / result /
cleanup). Methods:

- ``backprop``: transcript loss through the frozen LLM, AdamW (backprop.py);
- ``zo``: MeZO-style SPSA with AdaZeta's query schedule, forward passes only (zo.py; optional TT adapter);
- ``embed``: match the LLM's input embeddings of the transcript, no LLM forward (embed.py);
- ``ctc``: the personal CTC head and adapter alone, CTC loss, no LLM forward (ctc.py);
- ``default``: ``DEFAULT_METHOD`` (ctc) where the bridge can grow a personal head, else
  ``FALLBACK_METHOD`` (backprop); with the daemon's ``[alignment]`` defaults (a 9-frame adapter with
  dropout, 600 steps at 3e-3, an anchor, replay, word spotting, voice routing chosen by the gate) that is
  bench/personalize.py ``ctc+spot`` / ``ctc+voice+spot``: the best quality measured on all three test
  voices, in a fraction of a backprop job's time and memory (docs/ARCHITECTURE.md "Method choice"). On a
  Whisper encoder ``personal_top`` adds a trained copy of the encoder's top under the head
  (``TOP_STEP_DEFAULTS``, ``TOP_MICRO_BATCH``): bench/personalize.py ``top@daemon``.
"""

from __future__ import annotations

from typing import Any, Sequence

from assistant.config import METHODS
from assistant.alignment.trainers.backprop import BackpropRecipe
from assistant.alignment.trainers.base import LabelledExample, Progress, Recipe, TrainSettings
from assistant.alignment.trainers.ctc import CtcRecipe
from assistant.alignment.trainers.embed import EmbedRecipe
from assistant.alignment.trainers.zo import ZeroOrderRecipe

DEFAULT_METHOD = "ctc"  # with the [alignment] defaults: bench/personalize.py "ctc+spot" (and "+voice")
FALLBACK_METHOD = "backprop"  # "default" on a bridge that cannot own a personal head
# (max_steps, learning_rate) a method takes when [alignment] leaves them at 0. A ctc step is a fraction of
# a backprop step, and the head it trains generalises best past 200 steps (bench/RESULTS.md, "Adapter shape")
STEP_DEFAULTS: dict[str, tuple[int, float]] = {"ctc": (600, 3e-3)}
# a ctc job that trains a personal top: its pretrained layers want small steps (the top's weights at
# TrainSettings.top_lr_scale x the rate), and a step costs ~1 s on a 2-core CPU (bench/RESULTS.md,
# "A personal top")
TOP_STEP_DEFAULTS = (200, 2e-4)
# ... and runs each batch one utterance at a time (when alignment.micro_batch_size is 0): as fast on a CPU as
# parts of 4, and the job's peak is ~230 MB lower (bench/RESULTS.md, "Alignment speed and memory")
TOP_MICRO_BATCH = 1
GENERIC_STEP_DEFAULTS = (200, 1e-3)
# the top's learning-rate factor: a full copy's pretrained weights move slowly; a LoRA update starts at zero
# and needs the larger steps LoRA usually takes
TOP_LR_SCALE = 0.5
TOP_LORA_LR_SCALE = 5.0


def resolve_method(method: str, *, bridge_kind: str, encoder_has_ctc: bool, personal_head: bool) -> str:
    """``default`` -> the method it stands for with this bridge: ``DEFAULT_METHOD`` where the bridge can
    grow a personal CTC head (a ctc bridge, an encoder with a CTC head, ``personal_head`` on), else
    ``FALLBACK_METHOD``; any other method as it is."""
    if method != "default":
        return method
    if DEFAULT_METHOD == "ctc" and not (personal_head and bridge_kind == "ctc" and encoder_has_ctc):
        return FALLBACK_METHOD
    return DEFAULT_METHOD


def step_defaults(method: str, *, personal_top: bool = False) -> tuple[int, float]:
    """(max_steps, learning_rate) for a resolved method when the config leaves them at 0."""
    if personal_top and method == "ctc":
        return TOP_STEP_DEFAULTS
    return STEP_DEFAULTS.get(method, GENERIC_STEP_DEFAULTS)


def settings_for(cfg: Any, method: str, *, seed: int, replay: Sequence[Any] = (),
                 personal_top: bool = False) -> TrainSettings:
    """The job's ``TrainSettings`` from an ``[alignment]`` config (``config.AlignmentConfig``) for the
    resolved ``method``; a 0 ``max_steps`` / ``learning_rate`` takes the method's default. ``personal_top``:
    the job trains a personal top (``personalize`` decides: the config asks and the encoder offers one)."""
    steps, lr = step_defaults(method, personal_top=personal_top)
    return TrainSettings(max_steps=cfg.max_steps or steps, learning_rate=cfg.learning_rate or lr,
                         batch_size=cfg.batch_size, seed=seed, anchor_weight=cfg.anchor_weight, replay=replay,
                         replay_share=cfg.replay_share if replay else 0.0, personal_head=cfg.personal_head,
                         adapter_dim=cfg.adapter_dim, adapter_kernel=cfg.adapter_kernel,
                         adapter_dropout=cfg.adapter_dropout, parent_lr_scale=cfg.parent_lr_scale,
                         micro_batch_size=cfg.micro_batch_size or (TOP_MICRO_BATCH if personal_top else 0),
                         voice_routing=cfg.voice_routing == "on",
                         personal_top=personal_top, top_rank=cfg.top_rank if personal_top else 0,
                         top_lr_scale=TOP_LORA_LR_SCALE if personal_top and cfg.top_rank else TOP_LR_SCALE)


def recipe_options(method: str, cfg: Any) -> dict[str, Any]:
    """Recipe constructor options from ``[alignment]``: gradient checkpointing for the backprop methods."""
    if cfg.gradient_checkpointing and method == "backprop":
        return {"gradient_checkpointing": True}
    return {}


def make_recipe(method: str, **options: Any) -> Recipe:
    """A fresh recipe for ``method``; ``options`` go to the recipe's constructor
    (backprop: ``gradient_checkpointing``; zo: ``eps``, ``alpha``, ``beta``, ``q_max``,
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
    raise ValueError(f"unknown alignment method {method!r}; allowed: {', '.join(METHODS)}")


__all__ = ["METHODS", "DEFAULT_METHOD", "FALLBACK_METHOD", "resolve_method", "make_recipe", "step_defaults",
           "settings_for", "recipe_options", "STEP_DEFAULTS", "Recipe", "TrainSettings", "Progress", "LabelledExample",
           "BackpropRecipe", "ZeroOrderRecipe", "EmbedRecipe", "CtcRecipe"]
