"""Stage: train the demo LLM, a tiny Llama over characters, on the corpus text.

Two kinds of sequence, mixed per batch:
- reply: ``<bos> transcript <reply> Reply text. <eos>`` — the request domain and its answers (the
  response prompt of the demo bundle is ``{transcript}<reply>``);
- copy: ``<bos> noised transcript <sep> transcript <eos>`` — reading a corrupted rendering of the
  sentence and writing it clean. The speech prompt has the same layout (``<bos> speech <sep>``), and
  a tiny LM that has learned to copy from a noisy prefix is one a bridge can learn to talk to
  (a pure LM objective left the bridge untrainable in the prototype).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Sequence

import torch

from bench.demo.common import Progress, one_cycle

LETTERS = string.ascii_lowercase + "'"


@dataclass(frozen=True)
class LMRecipe:
    hidden: int = 192
    layers: int = 4
    heads: int = 4
    ffn: int = 576
    steps: int = 900
    batch: int = 32
    peak_lr: float = 3e-3
    copy_share: float = 0.6
    max_noise: float = 0.35
    seed: int = 0


def noised(text: str, rate: float, rng: random.Random) -> str:
    """Character substitutions, deletions, insertions and doubled letters, like a weak recognizer."""
    out = []
    for c in text:
        u = rng.random()
        if u < rate * 0.4:
            out.append(rng.choice(LETTERS))
        elif u < rate * 0.65:
            continue
        elif u < rate * 0.85:
            out.append(c + rng.choice(LETTERS))
        elif u < rate:
            out.append(c + c)
        else:
            out.append(c)
    return " ".join("".join(out).split())


def build_model(r: LMRecipe, tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=r.hidden, intermediate_size=r.ffn, num_hidden_layers=r.layers,
                      num_attention_heads=r.heads, num_key_value_heads=r.heads, max_position_embeddings=1024,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, architectures=["LlamaForCausalLM"])
    return LlamaForCausalLM(cfg)


def make_sequence(tok, text: str, reply: str, rng: random.Random, r: LMRecipe) -> list[int]:
    bos, eos = tok.bos_token_id, tok.eos_token_id
    enc = lambda s: tok(s, add_special_tokens=False).input_ids  # noqa: E731
    if rng.random() < r.copy_share:
        noisy = noised(text, rng.uniform(0.0, r.max_noise), rng)
        return [bos, *enc(noisy), tok.convert_tokens_to_ids("<sep>"), *enc(text), eos]
    return [bos, *enc(text), tok.convert_tokens_to_ids("<reply>"), *enc(reply), eos]


def train(r: LMRecipe, tok, pairs: Sequence[tuple[str, str]]):
    torch.manual_seed(r.seed)
    rng = random.Random(r.seed)
    model = build_model(r, tok)
    opt = torch.optim.AdamW(model.parameters(), lr=r.peak_lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = one_cycle(opt, r.steps, r.peak_lr)
    progress = Progress("llm", r.steps)
    model.train()
    for step in range(1, r.steps + 1):
        seqs = [make_sequence(tok, *rng.choice(pairs), rng, r) for _ in range(r.batch)]
        ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in seqs], batch_first=True,
                                              padding_value=tok.pad_token_id)
        mask = (torch.arange(ids.shape[1])[None] < torch.tensor([len(s) for s in seqs])[:, None]).long()
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        progress(step, loss=loss.item())
    return model.eval()
