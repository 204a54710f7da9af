"""Stage: train the base bridges (conv and ctc) with the encoder and the LLM frozen.

Encoder outputs are computed once for the whole training set (the same caching that makes
personalization cheap); each step runs only the bridge and the frozen LLM.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

from assistant.alignment.objective import target_ids, transcript_loss
from assistant.engine.bridge import CtcBridge, ctc_segments, run_bridge
from assistant.engine.checkpoint import LoadedBridge
from assistant.engine.llm import CausalLM
from bench.demo.common import Progress, one_cycle


@dataclass(frozen=True)
class BridgeRecipe:
    steps: int = 500
    batch: int = 32
    peak_lr: float = 1e-3
    seed: int = 0


def train(r: BridgeRecipe, bridge: LoadedBridge, llm: CausalLM, feats: Sequence[torch.Tensor],
          logits: Sequence[torch.Tensor], texts: Sequence[str]) -> LoadedBridge:
    torch.manual_seed(r.seed)
    rng = random.Random(r.seed)
    module = bridge.module.train().requires_grad_(True)
    is_ctc = isinstance(module, CtcBridge)
    segments = [ctc_segments(f.float(), lg.float(), module.blank_id) for f, lg in zip(feats, logits)] if is_ctc else None
    targets = [target_ids(llm, t) for t in texts]
    opt = torch.optim.AdamW(module.parameters(), lr=r.peak_lr, weight_decay=0.01)
    sched = one_cycle(opt, r.steps, r.peak_lr)
    progress = Progress(f"bridge-{bridge.kind}", r.steps)
    for step in range(1, r.steps + 1):
        idx = rng.sample(range(len(texts)), min(r.batch, len(texts)))
        if is_ctc:
            speech = [module.forward_segments(*segments[i]) for i in idx]
        else:
            speech = run_bridge(module, [feats[i].float() for i in idx])
        loss = transcript_loss(llm, speech, [targets[i] for i in idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        sched.step()
        progress(step, loss=loss.item())
    module.eval().requires_grad_(False)
    return bridge
