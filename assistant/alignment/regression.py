"""The generic regression set shipped with a bundle: cached encoder outputs + reference transcripts.

The alignment quality gate re-runs only bridge + LLM on it, so a candidate bridge that forgets
generic speech is caught without the audio or the encoder. Stored compactly (it ships inside the
bundle): features as int8 with a float16 scale per channel (absmax; the gate compares two bridges on
the same dequantized features, so the rounding affects both alike) and, instead of CTC logits, the
per-frame CTC argmax (all that CTC compression and drafts use).

    <dir>/encoded.safetensors   "<i>.features_q" (frames, dim) i8 + "<i>.features_scale" (dim,) f16
                                (or "<i>.features" f16), "<i>.ctc_labels" (frames,) i16
    <dir>/utterances.json       {"encoder_id", "ctc_vocab", "utterances": [{"index", "id", "voice", "text",
                                 "frames", "frame_rate_hz"}]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from assistant.engine.encoder import EncoderOutput
from assistant.errors import ModelFilesError


@dataclass(frozen=True)
class RegressionItem:
    encoded: EncoderOutput
    text: str
    id: str
    duration_s: float


def save_regression_set(directory: Path, encoded: Sequence[EncoderOutput], rows: Sequence[dict], *,
                        encoder_id: str, quantize: bool = True) -> None:
    from safetensors.torch import save_file

    tensors, meta = {}, []
    for i, (enc, row) in enumerate(zip(encoded, rows)):
        feats = enc.features.float().cpu()
        if quantize:
            scale = (feats.abs().amax(0) / 127.0).clamp(min=1e-8)
            tensors[f"{i}.features_q"] = torch.round(feats / scale).clamp(-127, 127).to(torch.int8).contiguous()
            tensors[f"{i}.features_scale"] = scale.to(torch.float16).contiguous()
        else:
            tensors[f"{i}.features"] = feats.to(torch.float16).contiguous()
        if enc.ctc_logits is not None:
            tensors[f"{i}.ctc_labels"] = enc.ctc_logits.argmax(-1).to(torch.int16).contiguous().cpu()
        meta.append({"index": i, **row, "frames": enc.n_frames, "frame_rate_hz": enc.frame_rate_hz})
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "encoded.safetensors"))
    vocab = int(encoded[0].ctc_logits.shape[-1]) if encoded and encoded[0].ctc_logits is not None else 0
    (directory / "utterances.json").write_text(json.dumps(
        {"encoder_id": encoder_id, "ctc_vocab": vocab, "utterances": meta}, indent=1), encoding="utf-8")


def load_regression_set(directory: Path, *, encoder_id: str, device: str | torch.device = "cpu",
                        ctc_head: torch.nn.Module | None = None) -> list[RegressionItem]:
    """Load the set; refuses one cached by another encoder (its features would mean nothing).

    ``ctc_head`` (the encoder's): CTC logits are recomputed from the features, as soft as at serving
    time; without it they are one-hot logits of the stored labels (the argmax only)."""
    from safetensors.torch import load_file

    try:
        info = json.loads((directory / "utterances.json").read_text(encoding="utf-8"))
        tensors = load_file(str(directory / "encoded.safetensors"), device=str(device))
    except (OSError, ValueError) as exc:
        raise ModelFilesError(f"regression set {directory} is missing or unreadable: {exc}") from exc
    if info.get("encoder_id") != encoder_id:
        raise ModelFilesError(f"regression set {directory} was cached by encoder {info.get('encoder_id')}, "
                              f"the loaded encoder is {encoder_id}", fix="rebuild it with this encoder")
    vocab = int(info.get("ctc_vocab", 0))
    items = []
    for u in info["utterances"]:
        i = u["index"]
        if f"{i}.features_q" in tensors:
            feats = tensors[f"{i}.features_q"].float() * tensors[f"{i}.features_scale"].float()
        else:
            feats = tensors[f"{i}.features"].float()
        labels = tensors.get(f"{i}.ctc_labels")
        logits = None
        if labels is not None and ctc_head is not None:  # soft logits: joint CTC/LLM decoding weighs them
            with torch.no_grad():
                # on the head's device and dtype (a GPU encoder's head is fp16 on cuda), back to feats'
                head = next(ctc_head.parameters())
                logits = ctc_head(feats.to(head.device, head.dtype)).float().to(feats.device)
        elif labels is not None:  # one-hot logits reproduce the argmax exactly
            logits = torch.full((labels.shape[0], vocab), -1e4, device=feats.device)
            logits[torch.arange(labels.shape[0]), labels.long()] = 0.0
        enc = EncoderOutput(features=feats, ctc_logits=logits, frame_rate_hz=float(u["frame_rate_hz"]))
        items.append(RegressionItem(encoded=enc, text=u["text"], id=u["id"], duration_s=u["frames"] / u["frame_rate_hz"]))
    return items
