"""Low-rank updates (LoRA, arXiv 2106.09685) on frozen pretrained layers that stay shared.

A personal top with a rank (``whisper.WhisperBackbone.top_lora``) wraps every Linear of its Whisper
layers in ``LoraLinear``: ``y = x W^T + b + (x A^T) B^T * alpha / rank``, with ``W`` and ``b`` the
encoder's own frozen weights, referenced rather than copied. Only ``A`` and ``B`` train (with the
layer norms and our small CTC module's layers), so a job keeps no gradient or AdamW state for the
pretrained weights, and a bridge version on disk and in memory holds only the update (the full copy of
two Whisper base layers is 28 MB per version).

The frozen layer sits outside the module tree (``Shared``), so ``deepcopy``, ``.to()``,
``state_dict()`` and ``requires_grad_()`` of the owner never copy, move, save or unfreeze it.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


# alpha = 2 x rank: the update's scale does not change with the rank (LoRA's usual setting)
LORA_ALPHA_PER_RANK = 2.0


class Shared:
    """Holds a module by reference: a deep copy of its owner shares it instead of copying it."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __deepcopy__(self, memo: dict) -> "Shared":
        return self


class LoraLinear(nn.Module):
    """A frozen ``nn.Linear`` (shared) plus a trainable rank-``rank`` update that starts at zero."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"a LoRA rank must be >= 1, not {rank}")
        self.base = Shared(base)
        self.rank, self.scale = rank, alpha / rank
        # A like a Linear's default init, B zero: the update is zero until trained (the parent's function)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    @property
    def in_features(self) -> int:
        return self.base.module.in_features

    @property
    def out_features(self) -> int:
        return self.base.module.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self.base.module
        w = base.weight if base.weight.dtype == x.dtype else base.weight.to(x.dtype)  # fp16 encoder on a GPU
        b = base.bias if base.bias is None or base.bias.dtype == x.dtype else base.bias.to(x.dtype)
        out = nn.functional.linear(x, w.to(x.device), None if b is None else b.to(x.device))
        return out + (x @ self.lora_a.t()) @ self.lora_b.t() * self.scale


def with_lora(layer: nn.Module, rank: int, alpha: float) -> nn.Module:
    """A copy of ``layer`` whose every ``nn.Linear`` is a ``LoraLinear`` over the original (shared, not
    copied); its other parameters (layer norms) are copied and train."""
    linears = {id(m): m for m in layer.modules() if isinstance(m, nn.Linear)}
    memo: dict = {id(p): p for m in linears.values() for p in m.parameters()}  # the big weights: not copied
    out = copy.deepcopy(layer, memo)
    for parent in list(out.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, LoraLinear(child, rank, alpha))
    return out
