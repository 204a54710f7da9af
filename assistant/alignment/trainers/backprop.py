"""Backprop recipe: exact gradients of the transcript loss through the frozen LLM into the bridge.

The objective is ``alignment.objective.transcript_loss`` (teacher forcing, the inference prompt layout,
cross-entropy on the transcript + end tokens only), the loss the base bridges were trained with. The
LLM's weights have ``requires_grad=False``, so autograd keeps only what the bridge's gradient needs
(activations, no weight gradients). AdamW, length-bucketed batches, optional anchor and replay: see
``gradient.py``.

Gradient checkpointing (``gradient_checkpointing=True``) recomputes the LLM layers in backward instead of
keeping their activations. It needs the layers in train mode, and the LLM is the serving model, so it
is switched on (with ``model.train()``) only around each step's forward + backward and switched off
(with the previous mode) right after, even when the step raises. While a step runs, the serving model
must not decode (transformers drops the KV cache in checkpointed train-mode layers); the scheduler
already runs turns and steps on one thread, one at a time.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, Sequence

import torch

from assistant.alignment.objective import target_ids, transcript_loss
from assistant.alignment.trainers.batches import BridgeInputs, Post
from assistant.alignment.trainers.gradient import GradientRecipe

log = logging.getLogger(__name__)


class TranscriptObjective:
    """(bridge, example indices) -> mean transcript cross-entropy through the frozen LLM, plus
    ``ctc_weight`` x the CTC loss of the bridge's personal head when it has one (that head decides the
    segmentation, which no gradient through the LLM reaches)."""

    def __init__(self, llm: Any, inputs: BridgeInputs, post: Post | None = None, ctc_weight: float = 0.0) -> None:
        self.llm = llm
        self.inputs = inputs
        self.post = post
        self.ctc_weight = ctc_weight
        self.targets = [target_ids(llm, t) for t in inputs.texts]

    def __call__(self, module: torch.nn.Module, idx: Sequence[int]) -> torch.Tensor:
        speech = self.inputs.outputs(module, idx, self.post)
        loss = transcript_loss(self.llm, speech, [self.targets[i] for i in idx]).float()
        ctc = self.inputs.ctc_loss(module, idx) if self.ctc_weight > 0 else None
        return loss if ctc is None else loss + self.ctc_weight * ctc


def checkpointing_enabled(model: Any) -> bool:
    flag = getattr(model, "is_activation_checkpointing", None)  # transformers >= 5 (no deprecation warning)
    if flag is None:
        flag = getattr(model, "is_gradient_checkpointing", False)
    return bool(flag)


@contextlib.contextmanager
def checkpointed_llm(llm: Any) -> Iterator[None]:
    """Checkpoint the LLM's layers for the duration of the block, then restore the serving state."""
    model = llm.model
    was_training, was_on = model.training, checkpointing_enabled(model)
    had_hooks = bool(getattr(model, "_require_grads_hooks", None))
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
    enable({"use_reentrant": False})  # non-reentrant: gradients reach the bridge through inputs_embeds
    model.train()  # transformers checkpoints a layer only when it is training (dropout is 0 in these LLMs)
    try:
        yield
    finally:
        if not was_on:
            disable()
        if not had_hooks and hasattr(model, "disable_input_require_grads"):
            model.disable_input_require_grads()  # enable() hooks the input embeddings; don't leave it serving
        model.train(was_training)


class BackpropRecipe(GradientRecipe):
    def __init__(self, *, gradient_checkpointing: bool = False, clip_norm: float = 1.0) -> None:
        self.gradient_checkpointing = gradient_checkpointing
        super().__init__("backprop", TranscriptObjective,
                         around_step=checkpointed_llm if gradient_checkpointing else None,
                         clip_norm=clip_norm)
