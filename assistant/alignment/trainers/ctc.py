"""CTC recipe: train the bridge's personal CTC head (and its adapter) with the CTC loss alone.

No LLM forward at all: each step is the adapter and the head over the cached encoder frames of a batch,
so a step costs a fraction of a backprop step, and the job's extra memory is the head's activations.
What the user's voice teaches the head reaches the transcript two ways: the head decides the ctc
bridge's segments and their labels (what the LLM reads through the label table), and joint CTC/LLM
decoding scores every transcript token with the head's prefix probabilities. The bridge's projection
and label table are not touched (the CTC loss does not depend on them), so the LLM reads the new
segments with the weights it was aligned with.

Needs a bridge that can own a personal head: a ctc bridge, an encoder with a CTC head and
``alignment.personal_head`` on; anything else is refused at setup with that fix.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from assistant.alignment.trainers.batches import BridgeInputs, Post
from assistant.alignment.trainers.gradient import GradientRecipe
from assistant.errors import BridgeMismatchError


class CtcObjective:
    def __init__(self, llm: Any, inputs: BridgeInputs, post: Post | None = None, ctc_weight: float = 0.0) -> None:
        if inputs.ctc_targets is None:
            raise BridgeMismatchError(
                "the ctc alignment method trains a personal CTC head, and this bridge cannot own one",
                fix="use a ctc bridge on an encoder with a CTC head and set [alignment] personal_head = true, "
                    "or choose another method")
        self.inputs = inputs

    def __call__(self, module: torch.nn.Module, idx: Sequence[int]) -> torch.Tensor:
        return self.inputs.ctc_loss(module, idx)


class CtcRecipe(GradientRecipe):
    def __init__(self, *, clip_norm: float = 1.0) -> None:
        super().__init__("ctc", CtcObjective, clip_norm=clip_norm)
