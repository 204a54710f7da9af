"""Tensor-train (TT) factorised residual adapter on the bridge output, for the ZO recipe (AdaZeta).

The adapter is a linear map ``W_a`` (H x H, H = the LLM's hidden size) applied as a residual:
``out' = out + out @ W_a``. ``W_a`` is never stored densely: with ``H = a * b`` (the divisor pair
closest to sqrt(H), e.g. 896 = 28 * 32, 64 = 8 * 8) it is a 2-core TT matrix of rank r::

    W_a[(i1, i2), (o1, o2)] = sum_r G1[i1, o1, r] * G2[r, i2, o2] / sqrt(a * b * r)

i.e. a sum of r Kronecker products, (a^2 + b^2) * r parameters (896, r=4: 7,232 instead of 802,816).
Few parameters is the point: a ZO gradient estimate's variance grows with the number of perturbed
parameters. The 1/sqrt(a*b*r) factor keeps a unit change of the raw cores a unit-gain change of W_a,
so one epsilon and one learning rate suit every core. G2 starts at zero, so ``W_a = 0`` and the
candidate starts exactly as its parent.

Storing: the engine only loads plain bridges, so ``fold_into`` merges the adapter into the bridge's
final Linear after training. With ``out = x W^T + bias``, ``out (I + W_a) = x [(I + W_a)^T W]^T +
bias (I + W_a)``: the new weight is ``W + W_a^T W`` and the new bias ``bias + bias W_a``, exact up to
float rounding. While a job is paused the raw cores are in its training checkpoint (``adapter.*``).
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from assistant.engine.bridge import ConvBridge, CtcBridge

log = logging.getLogger(__name__)


def factor_pair(n: int) -> tuple[int, int]:
    """(a, b) with a * b = n and a <= b as close as possible (a = 1 for a prime n)."""
    a = int(math.isqrt(n))
    while n % a:
        a -= 1
    if a == 1:
        log.warning("hidden size %d is prime: the TT adapter degenerates to one dense core", n)
    return a, n // a


class TTAdapter(nn.Module):
    def __init__(self, dim: int, rank: int, seed: int = 0) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError("the TT rank must be >= 1")
        self.dim, self.rank = dim, rank
        self.a, self.b = factor_pair(dim)
        gen = torch.Generator().manual_seed(seed)
        self.core1 = nn.Parameter(torch.randn(self.a, self.a, rank, generator=gen), requires_grad=False)
        self.core2 = nn.Parameter(torch.zeros(rank, self.b, self.b), requires_grad=False)

    @property
    def n_params(self) -> int:
        return self.core1.numel() + self.core2.numel()

    def matrix(self) -> torch.Tensor:
        """The dense (H, H) W_a (rows: input index i1*b + i2, columns: output index o1*b + o2)."""
        scale = 1.0 / math.sqrt(self.a * self.b * self.rank)
        w = torch.einsum("ior,rjp->ijop", self.core1, self.core2) * scale
        return w.reshape(self.dim, self.dim)

    def forward(self, out: torch.Tensor) -> torch.Tensor:
        return out + out @ self.matrix().to(out.dtype)


def final_linear(module: nn.Module) -> nn.Linear:
    """The Linear that produces a bridge's output (the adapter folds into it)."""
    if isinstance(module, (ConvBridge, CtcBridge)):
        proj = module.proj
        last = proj[-1] if isinstance(proj, nn.Sequential) else proj
        if isinstance(last, nn.Linear):
            return last
    raise TypeError(f"cannot find the output Linear of {type(module).__name__}")


@torch.no_grad()
def fold_into(module: nn.Module, adapter: TTAdapter) -> nn.Module:
    """Merge ``adapter`` into ``module``'s final Linear in place (see the module docstring)."""
    lin = final_linear(module)
    w_a = adapter.matrix().to(lin.weight.device, torch.float64)
    weight = lin.weight.double()
    lin.weight.copy_(weight + w_a.t() @ weight)
    if lin.bias is not None:
        bias = lin.bias.double()
        lin.bias.copy_(bias + bias @ w_a)
    return module
