"""Cached bridge inputs and the seeded, length-bucketed batch plan shared by all recipes.

Training examples are the cached encoder outputs of labelled turns: the encoder never runs here. For a
ctc bridge the CTC compression (argmax, merge runs) is done once at setup, since it has no weights; each
step then runs only ``CtcBridge.forward_segments``. A conv bridge gets the frames.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Callable, Sequence

import torch
from torch import nn

from assistant.alignment.trainers.base import LabelledExample, derived_seed
from assistant.engine.bridge import CtcBridge, ctc_segments, run_bridge

Post = Callable[[torch.Tensor], torch.Tensor]  # applied to each bridge output (e.g. the ZO TT adapter)


class BridgeInputs:
    """Per-example bridge inputs on the bridge's device (train examples first, then replay).

    A ctc bridge that owns a CTC head or an adapter segments with its own (trained) weights, so its
    compression is redone at every step from the frames ("dynamic"); ``ctc_ids`` then also gives the
    personal head's CTC targets (``ctc_loss``). A bridge that owns a personal top reads each example's
    lower encoder states (``lowers``) through it; ``items`` stay the encoder's features (voice routing's
    centroids are made of them).
    """

    def __init__(self, module: torch.nn.Module, examples: Sequence[LabelledExample], device: torch.device,
                 ctc_ids: Callable[[str], list[int]] | None = None) -> None:
        self.is_ctc = isinstance(module, CtcBridge)
        self.dynamic = self.is_ctc and (module.owns_head or module.adapter is not None)
        self.texts = [str(e.text) for e in examples]
        self.frames: list[int] = []
        self.items: list[torch.Tensor] = []
        self.logits: list[torch.Tensor | None] = []  # encoder CTC logits (dynamic ctc bridges)
        self.labels: list[torch.Tensor] = []  # CTC label per segment (static ctc bridges)
        self.top = self.is_ctc and module.owns_top
        self.lowers: list[torch.Tensor | None] = []
        for e in examples:
            enc = e.encoded
            feats = _owned(enc.features, device, torch.float32)
            self.frames.append(int(feats.shape[0]))
            if self.top:
                if enc.lower is None:
                    raise ValueError("the personal top trains on the encoder's lower states; an example has none "
                                     "(encode it again with the bundle's Whisper encoder)")
                # kept in float16 (what the cache holds): 250 examples' lower states are 90 MB in float32
                self.lowers.append(_owned(enc.lower, device, torch.float16))
            else:
                self.lowers.append(None)
            if self.is_ctc and not (self.dynamic and module.owns_head) and enc.ctc_logits is None:
                raise ValueError("a ctc bridge needs cached CTC logits; this example has none")
            if self.dynamic:
                self.items.append(feats)
                self.logits.append(None if enc.ctc_logits is None else enc.ctc_logits.detach().to(device, torch.float32))
            elif self.is_ctc:
                seg, lab = ctc_segments(feats, enc.ctc_logits.detach().to(device, torch.float32), module.blank_id)
                self.items.append(seg)
                self.labels.append(lab)
            else:
                self.items.append(feats)
        self.ctc_targets = ([torch.tensor(ctc_ids(t), dtype=torch.long) for t in self.texts]
                            if ctc_ids is not None and self.dynamic and module.owns_head else None)

    def __len__(self) -> int:
        return len(self.items)

    def outputs(self, module: torch.nn.Module, idx: Sequence[int], post: Post | None = None) -> list[torch.Tensor]:
        """Bridge outputs (positions, llm_dim) for the examples ``idx``, unpadded."""
        xs = [self.items[i] for i in idx]
        if self.dynamic:
            outs = []
            for i in idx:
                f, logits = module.frames(self.items[i], self.logits[i], self.lowers[i])
                outs.append(module.forward_segments(*ctc_segments(f, logits.detach(), module.blank_id)))
        elif self.is_ctc:
            # LayerNorm and the projection act per position, so one call on the concatenation is exact
            lengths = [x.shape[0] for x in xs]
            labels = torch.cat([self.labels[i] for i in idx], 0)
            outs = list(module.forward_segments(torch.cat(xs, 0), labels).split(lengths))
        else:
            outs = run_bridge(module, xs)
        return [post(o) for o in outs] if post is not None else outs

    def ctc_loss(self, module: torch.nn.Module, idx: Sequence[int]) -> torch.Tensor | None:
        """Mean CTC loss of the bridge's personal head on the examples ``idx`` (None without one)."""
        if self.ctc_targets is None:
            return None
        lengths = torch.tensor([self.frames[i] for i in idx], device=self.items[idx[0]].device)
        if self.top:  # the personal top gives the features from the lower states
            lowers = nn.utils.rnn.pad_sequence([self.lowers[i] for i in idx], batch_first=True).float()
            feats = module.top(lowers, lengths)
        else:
            feats = nn.utils.rnn.pad_sequence([self.items[i] for i in idx], batch_first=True)
        x = module.adapter(feats, lengths) if module.adapter is not None else feats
        log_probs = module.head(x).float().log_softmax(-1).transpose(0, 1)
        targets = [self.ctc_targets[i] for i in idx]
        return nn.functional.ctc_loss(
            log_probs, torch.cat(targets).to(log_probs.device),
            torch.tensor([self.frames[i] for i in idx]), torch.tensor([len(t) for t in targets]),
            blank=module.blank_id, zero_infinity=True)


def _owned(t: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``t`` on ``device`` in ``dtype``, shared with the caller when it already is (nothing here writes to an
    input); an inference tensor (the encoder's own output) is copied, since autograd cannot save it."""
    t = t.detach().to(device, dtype)
    return t.clone() if t.is_inference() else t


def fingerprint(examples: Sequence[LabelledExample]) -> str:
    """Identifies a training set (texts + frame counts) so a checkpoint is resumed on the same data."""
    h = hashlib.sha256()
    for e in examples:
        h.update(str(e.text).encode())
        h.update(b"\0%d\0" % int(e.encoded.features.shape[0]))
    return h.hexdigest()[:16]


class BatchPlan:
    """Which examples each step uses: a pure function of (seed, step), so resumes draw the same batches.

    Per epoch the training examples are shuffled, cut into pools of 8 batches, sorted by (text length,
    frames) inside each pool and batched, so a batch holds similar lengths (little padding in the LLM),
    and the batch order is shuffled. With replay examples, ``round(batch * replay_share)`` slots of each
    batch are drawn from them (indices after the training examples).
    """

    POOL = 8

    def __init__(self, texts: Sequence[str], frames: Sequence[int], n_train: int, n_replay: int, batch_size: int,
                 replay_share: float, seed: int) -> None:
        if n_train < 1:
            raise ValueError("training needs at least one example")
        self.keys = [(len(texts[i]), frames[i]) for i in range(n_train)]
        self.n_train, self.n_replay, self.seed = n_train, n_replay, seed
        self.replay_k = min(n_replay, max(1, round(batch_size * replay_share))) if n_replay and replay_share else 0
        self.train_k = min(n_train, max(1, batch_size - self.replay_k))
        self.steps_per_epoch = math.ceil(n_train / self.train_k)
        self._cached: tuple[int, list[list[int]]] | None = None

    def _epoch(self, epoch: int) -> list[list[int]]:
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        rng = random.Random(derived_seed(self.seed, epoch, 1))
        order = list(range(self.n_train))
        rng.shuffle(order)
        batches = []
        pool = self.train_k * self.POOL
        for s in range(0, len(order), pool):
            chunk = sorted(order[s : s + pool], key=lambda i: self.keys[i])
            batches += [chunk[j : j + self.train_k] for j in range(0, len(chunk), self.train_k)]
        rng.shuffle(batches)
        self._cached = (epoch, batches)
        return batches

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def batch(self, step: int) -> list[int]:
        epoch, j = divmod(step, self.steps_per_epoch)
        idx = list(self._epoch(epoch)[j])
        if self.replay_k:
            rng = random.Random(derived_seed(self.seed, step, 2))
            idx += [self.n_train + r for r in rng.sample(range(self.n_replay), self.replay_k)]
        return idx

    def eval_batches(self, batch_size: int) -> list[list[int]]:
        """The training examples (no replay) in fixed length-sorted batches, for measuring the objective."""
        order = sorted(range(self.n_train), key=lambda i: self.keys[i])
        return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


@torch.no_grad()
def mean_objective(objective: Callable[[torch.nn.Module, Sequence[int]], torch.Tensor], module: torch.nn.Module,
                   batches: Sequence[Sequence[int]]) -> float:
    """The objective over the training set (batch means weighted by batch size), without gradients."""
    total, n = 0.0, 0
    for idx in batches:
        total += float(objective(module, idx)) * len(idx)
        n += len(idx)
    return total / max(1, n)
