"""Helpers shared by the demo-build stages: seeded batching, one-cycle schedules, progress lines."""

from __future__ import annotations

import math
import random
import sys
import time
from typing import Iterator, Sequence

import torch


def bucketed_batches(lengths: Sequence[int], max_units: int, rng: random.Random, max_batch: int = 64
                     ) -> Iterator[list[int]]:
    """Endless batches of indices of similar length (less padding), about ``max_units`` long in total."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, cur, longest = [], [], 0
    for i in order:
        longest_new = max(longest, lengths[i])
        if cur and (longest_new * (len(cur) + 1) > max_units or len(cur) >= max_batch):
            batches.append(cur)
            cur, longest_new = [], lengths[i]
        cur.append(i)
        longest = longest_new
    if cur:
        batches.append(cur)
    while True:
        rng.shuffle(batches)
        yield from batches


def one_cycle(optimizer: torch.optim.Optimizer, total_steps: int, peak_lr: float, warmup: float = 0.08):
    def factor(step: int) -> float:
        w = max(1, int(total_steps * warmup))
        if step < w:
            return 0.05 + 0.95 * step / w
        p = (step - w) / max(1, total_steps - w)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    for g in optimizer.param_groups:
        g["lr"] = peak_lr
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Progress:
    def __init__(self, stage: str, total: int, every: int = 50) -> None:
        self.stage, self.total, self.every, self.t0 = stage, total, every, time.time()

    def __call__(self, step: int, **values: float) -> None:
        if step % self.every and step != self.total:
            return
        el = time.time() - self.t0
        eta = el / max(step, 1) * (self.total - step)
        vals = " ".join(f"{k} {v:.4g}" for k, v in values.items())
        print(f"  [{self.stage}] step {step}/{self.total} {vals} ({el:.0f} s, eta {eta:.0f} s)", file=sys.stderr,
              flush=True)
