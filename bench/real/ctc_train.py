"""Stage: our CTC module over the frozen pretrained Whisper encoder (CTC over characters).

Whisper's frames are computed once per clip (speech length only, engine/whisper.py) and cached as
float16; the CTC module (a projection and two small transformer layers, then a linear head) trains on
them with time and channel masking. Nothing of Whisper is trained.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from bench.demo.common import Progress, bucketed_batches, one_cycle
from bench.demo.encoder_train import ctc_vocab, encode_text


@dataclass(frozen=True)
class CtcRecipe:
    dim: int = 192
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    steps: int = 2000
    peak_lr: float = 2e-3
    max_frames: int = 3000  # padded frames per batch (~20 utterances)
    weight_decay: float = 0.01
    time_masks: int = 2
    time_mask_frames: int = 8
    channel_masks: int = 2
    channel_mask_dims: int = 48
    seed: int = 0


@torch.inference_mode()
def whisper_features(whisper, fe, waves: Sequence[np.ndarray], batch: int = 16, progress=None) -> list[torch.Tensor]:
    """Whisper encoder frames (T, d_model) of each wave, speech length only, float16, in input order."""
    from assistant.engine.whisper import whisper_frames, whisper_inputs

    order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
    out: list[torch.Tensor | None] = [None] * len(waves)
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        feats, mask = whisper_inputs(fe, [waves[i] for i in idx])
        frames = whisper_frames(whisper, feats, mask)
        for j, i in enumerate(idx):
            n = (int(mask[j].sum()) - 1) // 2 + 1
            out[i] = frames[j, :n].to(torch.float16).clone()
        if progress is not None:
            progress(min(s + batch, len(order)), len(order))
    return out  # type: ignore[return-value]


def _pad(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.nn.utils.rnn.pad_sequence([f.float() for f in feats], batch_first=True)
    lengths = torch.tensor([f.shape[0] for f in feats])
    return x, lengths


def _mask(x: torch.Tensor, lengths: torch.Tensor, r: CtcRecipe, rng: random.Random) -> torch.Tensor:
    x = x.clone()
    for i, n in enumerate(lengths.tolist()):
        for _ in range(r.time_masks):
            w = rng.randint(0, r.time_mask_frames)
            s = rng.randint(0, max(0, n - w))
            x[i, s:s + w] = 0
        for _ in range(r.channel_masks):
            w = rng.randint(0, r.channel_mask_dims)
            s = rng.randint(0, max(0, x.shape[2] - w))
            x[i, :, s:s + w] = 0
    return x


def logits_of(ctc, feats: list[torch.Tensor], batch: int = 32) -> list[torch.Tensor]:
    ctc.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(feats), batch):
            x, lengths = _pad(feats[s:s + batch])
            pad = torch.arange(x.shape[1])[None, :] >= lengths[:, None]
            logits = ctc.lm_head(ctc.features(x, pad))
            out += [logits[i, :n] for i, n in enumerate(lengths.tolist())]
    return out


def greedy(logits: list[torch.Tensor], vocab: dict[str, int]) -> list[str]:
    inv = {i: c for c, i in vocab.items()}
    out = []
    for lg in logits:
        seq = torch.unique_consecutive(lg.argmax(-1)).tolist()
        text = "".join(" " if inv[i] == "|" else inv[i] for i in seq if i > 3)
        out.append(" ".join(text.split()))
    return out


def train(r: CtcRecipe, feats: list[torch.Tensor], texts: list[str], dev_feats: list[torch.Tensor],
          dev_texts: list[str]):
    from assistant.engine.whisper import CtcModule
    from assistant.metrics import cer

    torch.manual_seed(r.seed)
    rng = random.Random(r.seed)
    vocab = ctc_vocab()
    ctc = CtcModule(feats[0].shape[1], r.dim, r.layers, r.heads, len(vocab), dropout=r.dropout)
    labels = [torch.tensor(encode_text(t, vocab)) for t in texts]
    opt = torch.optim.AdamW(ctc.parameters(), lr=r.peak_lr, weight_decay=r.weight_decay)
    sched = one_cycle(opt, r.steps, r.peak_lr)
    batches = bucketed_batches([f.shape[0] for f in feats], r.max_frames, random.Random(r.seed))
    progress = Progress("ctc", r.steps, every=100)
    for step in range(1, r.steps + 1):
        ctc.train()
        idx = next(batches)
        x, lengths = _pad([feats[i] for i in idx])
        x = _mask(x, lengths, r, rng)
        pad = torch.arange(x.shape[1])[None, :] >= lengths[:, None]
        logp = torch.log_softmax(ctc.lm_head(ctc.features(x, pad)), -1)
        tgt = [labels[i] for i in idx]
        loss = torch.nn.functional.ctc_loss(logp.transpose(0, 1), torch.cat(tgt), lengths,
                                            torch.tensor([len(t) for t in tgt]), blank=0, zero_infinity=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ctc.parameters(), 5.0)
        opt.step()
        sched.step()
        progress(step, loss=loss.item())
    dev_cer = cer(dev_texts, greedy(logits_of(ctc, dev_feats), vocab)).rate
    ctc.eval()
    return ctc, vocab, dev_cer
