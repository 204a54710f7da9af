"""Stage: train the demo speech encoder from scratch (CTC over characters).

A transformers ``Wav2Vec2BertForCTC`` (conformer layers over 80-bin log-mel features stacked to
20 ms frames by ``SeamlessM4TFeatureExtractor``) — loadable with ``from_pretrained`` like the real
presets. A log-mel front end leaves CTC's all-blank plateau quickly where a small raw-waveform
model does not (NOTES-speakers.md).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from bench.demo.common import Progress, bucketed_batches, one_cycle

CTC_CHARS = list("abcdefghijklmnopqrstuvwxyz'")


@dataclass(frozen=True)
class EncoderRecipe:
    hidden: int = 192
    layers: int = 4
    heads: int = 4
    ffn: int = 768
    conv_kernel: int = 15
    steps: int = 2000
    peak_lr: float = 1.5e-3
    max_frames: int = 2400  # padded frames per batch (~16 utterances): more, smaller steps learn faster here
    weight_decay: float = 0.01
    augment_copies: int = 0  # perturbed copies of the training set (bench/demo/augment.py, --augment N)
    pad_s: float = 0.0  # up to this much room noise before and after each training clip (augment.room_padded)
    seed: int = 0


def feature_extractor():
    from transformers import SeamlessM4TFeatureExtractor

    return SeamlessM4TFeatureExtractor(feature_size=80, num_mel_bins=80, sampling_rate=16000, stride=2,
                                       padding_value=0.0, return_attention_mask=True)


def fbank(fe, waves: Sequence[np.ndarray]) -> list[torch.Tensor]:
    """Per-utterance (frames, 160) features, computed once and reused by every step."""
    out = []
    for w in waves:
        x = fe(w, sampling_rate=16000, return_tensors="pt")["input_features"][0]
        out.append(x.to(torch.float16))
    return out


def ctc_vocab() -> dict[str, int]:
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    for c in CTC_CHARS:
        vocab[c] = len(vocab)
    return vocab


def encode_text(text: str, vocab: dict[str, int]) -> list[int]:
    return [vocab["|"] if c == " " else vocab.get(c, vocab["<unk>"]) for c in text]


def build_model(r: EncoderRecipe, vocab_size: int):
    from transformers import Wav2Vec2BertConfig, Wav2Vec2BertForCTC

    cfg = Wav2Vec2BertConfig(
        hidden_size=r.hidden, num_hidden_layers=r.layers, num_attention_heads=r.heads, intermediate_size=r.ffn,
        feature_projection_input_dim=160, conv_depthwise_kernel_size=r.conv_kernel, position_embeddings_type="rotary",
        vocab_size=vocab_size, pad_token_id=0, bos_token_id=1, eos_token_id=2, layerdrop=0.0,
        hidden_dropout=0.1, activation_dropout=0.1, attention_dropout=0.1, feat_proj_dropout=0.1, final_dropout=0.1,
        mask_time_prob=0.05, mask_time_length=5, mask_feature_prob=0.05, mask_feature_length=8,
        ctc_loss_reduction="mean", ctc_zero_infinity=True, add_adapter=False, architectures=["Wav2Vec2BertForCTC"])
    return Wav2Vec2BertForCTC(cfg)


def _pad(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.nn.utils.rnn.pad_sequence([f.float() for f in feats], batch_first=True)
    mask = torch.zeros(x.shape[:2], dtype=torch.long)
    for i, f in enumerate(feats):
        mask[i, : f.shape[0]] = 1
    return x, mask


def greedy_ctc(model, feats: list[torch.Tensor], vocab: dict[str, int], batch: int = 32) -> list[str]:
    inv = {i: c for c, i in vocab.items()}
    out = []
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(feats), batch):
            x, mask = _pad(feats[s : s + batch])
            ids = model(input_features=x, attention_mask=mask).logits.argmax(-1)
            for row, n in zip(ids, mask.sum(1).tolist()):
                seq = torch.unique_consecutive(row[:n]).tolist()
                text = "".join(" " if inv[i] == "|" else inv[i] for i in seq if i > 3)
                out.append(" ".join(text.split()))
    return out


def train(r: EncoderRecipe, feats: list[torch.Tensor], texts: list[str], dev_feats: list[torch.Tensor],
          dev_texts: list[str]):
    from assistant.metrics import cer

    torch.manual_seed(r.seed)
    vocab = ctc_vocab()
    model = build_model(r, len(vocab))
    labels = [torch.tensor(encode_text(t, vocab)) for t in texts]
    opt = torch.optim.AdamW(model.parameters(), lr=r.peak_lr, weight_decay=r.weight_decay)
    sched = one_cycle(opt, r.steps, r.peak_lr)
    batches = bucketed_batches([f.shape[0] for f in feats], r.max_frames, random.Random(r.seed))
    progress = Progress("encoder", r.steps)
    model.train()
    for step in range(1, r.steps + 1):
        idx = next(batches)
        x, mask = _pad([feats[i] for i in idx])
        lab = torch.nn.utils.rnn.pad_sequence([labels[i] for i in idx], batch_first=True, padding_value=-100)
        loss = model(input_features=x, attention_mask=mask, labels=lab).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        progress(step, loss=loss.item())
    hyps = greedy_ctc(model, dev_feats, vocab)
    dev_cer = cer(dev_texts, hyps).rate
    model.eval()
    return model, vocab, dev_cer


def save(model, vocab: dict[str, int], directory: Path) -> None:
    import json

    from transformers import Wav2Vec2CTCTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    Wav2Vec2CTCTokenizer(str(directory / "vocab.json"), word_delimiter_token="|").save_pretrained(directory)
    feature_extractor().save_pretrained(directory)
