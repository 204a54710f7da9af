"""The trainable bridge: encoder frames -> LLM input embeddings.

Two kinds:
- ``conv`` (Nue-ASR): [LayerNorm] -> Conv1d(k4, s2) + GELU -> Conv1d(k4, s2) + GELU -> Linear; 4x fewer
  positions (50 Hz frames -> 12.5 Hz).
- ``ctc``: drop the frames whose CTC argmax is blank, merge each run of one label into the mean of its
  features (one position per emitted CTC symbol), then LayerNorm -> projection (Linear, or a
  Linear-GELU-Linear MLP when ``hidden_dim > 0``).

A checkpoint is a directory ``bridge.safetensors`` + ``bridge.json`` (see checkpoint.py); the module is
rebuilt from the JSON alone.
"""

from __future__ import annotations

import torch
from torch import nn

BRIDGE_KINDS = ("conv", "ctc")
MIN_FRAMES = 4  # the two stride-2 convolutions need 4 frames (80 ms) to emit one position


def ctc_compress(features: torch.Tensor, logits: torch.Tensor, blank_id: int) -> torch.Tensor:
    """(frames, dim), (frames, vocab) -> (segments, dim).

    A segment is a maximal run of consecutive frames with the same non-blank argmax; a blank between
    two runs of one label keeps them apart (as in CTC decoding). An utterance with no non-blank frame
    becomes one segment, the mean of all frames, so the LLM always gets a speech prompt.
    """
    if features.shape[0] != logits.shape[0]:
        raise ValueError(f"features have {features.shape[0]} frames but logits {logits.shape[0]}")
    labels = logits.argmax(-1)
    keep = labels != blank_id
    if not bool(keep.any()):
        return features.mean(0, keepdim=True)
    prev_label = torch.cat([labels.new_full((1,), -1), labels[:-1]])
    prev_keep = torch.cat([keep.new_zeros(1), keep[:-1]])
    starts = keep & ((labels != prev_label) | ~prev_keep)
    seg = torch.cumsum(starts.long(), 0) - 1
    n = int(starts.sum())
    sums = features.new_zeros(n, features.shape[1]).index_add_(0, seg[keep], features[keep])
    counts = torch.bincount(seg[keep], minlength=n).to(features.dtype).unsqueeze(1)
    return sums / counts


def _valid(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(batch,) lengths -> (batch, frames, 1) mask of real frames."""
    return (torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]).unsqueeze(-1)


def _pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([s.shape[0] for s in seqs], device=seqs[0].device)
    return nn.utils.rnn.pad_sequence(seqs, batch_first=True), lengths


class ConvBridge(nn.Module):
    def __init__(self, encoder_dim: int, llm_dim: int, hidden_dim: int, input_norm: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(encoder_dim) if input_norm else nn.Identity()
        self.conv1 = nn.Conv1d(encoder_dim, hidden_dim, kernel_size=4, stride=2, padding=1)
        self.conv2 = nn.Conv1d(hidden_dim, hidden_dim, kernel_size=4, stride=2, padding=1)
        self.proj = nn.Linear(hidden_dim, llm_dim)
        self.act = nn.GELU()

    @staticmethod
    def out_lengths(lengths: torch.Tensor) -> torch.Tensor:
        # k=4, s=2, p=1 gives floor(T / 2) per convolution
        return torch.div(torch.div(lengths, 2, rounding_mode="floor"), 2, rounding_mode="floor")

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, frames, encoder_dim), (batch,) -> (batch, frames // 4, llm_dim), (batch,)."""
        if features.shape[1] < MIN_FRAMES:
            features = nn.functional.pad(features, (0, 0, 0, MIN_FRAMES - features.shape[1]))
            lengths = lengths.clamp(min=MIN_FRAMES)
        # Zero everything past each utterance's end, after each layer, so a padded batch gives exactly
        # what each utterance alone gives (the convolutions' own zero padding).
        x = self.norm(features) * _valid(lengths, features.shape[1])
        x = self.act(self.conv1(x.transpose(1, 2))).transpose(1, 2)
        half = torch.div(lengths, 2, rounding_mode="floor")
        x = x * _valid(half, x.shape[1])
        x = self.act(self.conv2(x.transpose(1, 2))).transpose(1, 2)
        return self.proj(x), self.out_lengths(lengths)


class CtcBridge(nn.Module):
    def __init__(self, encoder_dim: int, llm_dim: int, hidden_dim: int, blank_id: int, input_norm: bool = True) -> None:
        super().__init__()
        self.blank_id = blank_id
        self.norm = nn.LayerNorm(encoder_dim) if input_norm else nn.Identity()
        if hidden_dim > 0:
            self.proj = nn.Sequential(nn.Linear(encoder_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, llm_dim))
        else:
            self.proj = nn.Linear(encoder_dim, llm_dim)

    def compress(self, features: torch.Tensor, lengths: torch.Tensor, ctc_logits: torch.Tensor) -> list[torch.Tensor]:
        return [ctc_compress(features[i, :n], ctc_logits[i, :n], self.blank_id) for i, n in enumerate(lengths.tolist())]

    def forward(self, features: torch.Tensor, lengths: torch.Tensor,
                ctc_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, frames, dim), (batch,), (batch, frames, vocab) -> (batch, segments, llm_dim), (batch,)."""
        if ctc_logits is None:
            raise ValueError("the ctc bridge needs the encoder's CTC logits")
        segments, seg_lengths = _pad(self.compress(features, lengths, ctc_logits))
        return self.proj(self.norm(segments)), seg_lengths

    def forward_segments(self, segments: torch.Tensor) -> torch.Tensor:
        """Project already-compressed segments (cached at inference time for training)."""
        return self.proj(self.norm(segments))


def build_bridge(kind: str, *, encoder_dim: int, llm_dim: int, hidden_dim: int,
                 blank_id: int | None = None, input_norm: bool = True) -> nn.Module:
    if kind == "conv":
        return ConvBridge(encoder_dim, llm_dim, hidden_dim, input_norm=input_norm)
    if kind == "ctc":
        if blank_id is None:
            raise ValueError("a ctc bridge needs the CTC blank id")
        return CtcBridge(encoder_dim, llm_dim, hidden_dim, blank_id, input_norm=input_norm)
    raise ValueError(f"unknown bridge kind {kind!r}; allowed: {', '.join(BRIDGE_KINDS)}")


def run_bridge(module: nn.Module, features: list[torch.Tensor],
               ctc_logits: list[torch.Tensor | None] | None = None) -> list[torch.Tensor]:
    """Batch unpadded per-utterance inputs through a bridge; returns unpadded outputs."""
    feats, lengths = _pad(features)
    if isinstance(module, CtcBridge):
        if ctc_logits is None or any(x is None for x in ctc_logits):
            raise ValueError("the ctc bridge needs the encoder's CTC logits")
        logits, _ = _pad(ctc_logits)  # type: ignore[arg-type]
        out, out_len = module(feats, lengths, logits)
    else:
        out, out_len = module(feats, lengths)
    return [out[i, :n] for i, n in enumerate(out_len.tolist())]
