"""Whisper frames of a clip set, computed once and cached in the build's work directory.

The frozen encoder is the slow part of every later stage (a CTC module trains on its frames in
minutes; encoding them takes longer), so each set's frames are stored as one float16 safetensors file
keyed by the Whisper source, the set and how its audio was prepared.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch


def load_whisper(source: str, data_dir):
    from transformers import WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from assistant.pretrained.assemble import ensure

    d = ensure(source, data_dir) / "encoder"
    return (WhisperEncoder.from_pretrained(d, local_files_only=True, dtype=torch.float32).eval(),
            WhisperFeatureExtractor.from_pretrained(d, local_files_only=True))


def cached_frames(work: Path, source: str, name: str, ids: Sequence[str], waves: Sequence[np.ndarray],
                  whisper) -> list[torch.Tensor]:
    """Frames of ``waves`` (their ids key the cache with ``name``), from the cache or encoded now."""
    from safetensors.torch import load_file, save_file

    from bench.real.ctc_train import whisper_features

    key = hashlib.sha256("\n".join([source, name, *ids]).encode()).hexdigest()[:12]
    path = work / "frames" / f"{source}-{name}-{key}.safetensors"
    if path.is_file():
        data = load_file(str(path))
        flat, lengths = data["frames"], data["lengths"].tolist()
        return list(torch.split(flat, lengths))
    enc, fe = whisper

    def report(done: int, total: int) -> None:
        if done % 512 < 16 or done == total:
            print(f"  [frames {name}] {done}/{total}", file=sys.stderr, flush=True)

    feats = whisper_features(enc, fe, waves, progress=report)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"frames": torch.cat(feats).contiguous(), "lengths": torch.tensor([f.shape[0] for f in feats])},
              str(tmp))
    tmp.rename(path)
    return feats
