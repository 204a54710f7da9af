"""Encoding while the user speaks: fixed chunks with left context, so only the tail is left at the end.

Speech encoders look at the whole utterance (bidirectional attention), so a chunk is encoded with
``context_s`` of audio before it and only the frames of the chunk itself are kept. At end of speech
only the last, partial chunk remains. Features near chunk ends lack right context, which costs some
accuracy: bench/latency.py measures both the time saved and the WER cost against full encoding.
"""

from __future__ import annotations

import numpy as np
import torch

from assistant.engine.encoder import SAMPLE_RATE_HZ, EncoderOutput, SpeechEncoder


class StreamingEncoder:
    def __init__(self, encoder: SpeechEncoder, *, chunk_s: float = 2.0, context_s: float = 2.0) -> None:
        if chunk_s <= 0 or context_s < 0:
            raise ValueError("chunk_s must be > 0 and context_s >= 0")
        self.encoder = encoder
        self.chunk = int(chunk_s * SAMPLE_RATE_HZ)
        self.context = int(context_s * SAMPLE_RATE_HZ)
        self.reset()

    def reset(self) -> None:
        self._audio = np.zeros(0, dtype=np.float32)
        self._done = 0  # samples whose frames are final
        self._feats: list[torch.Tensor] = []
        self._logits: list[torch.Tensor] = []
        self.encode_calls = 0

    def _encode_span(self, start: int, end: int) -> None:
        """Encode [start - context, end) and keep the frames of [start, end)."""
        lo = max(0, start - self.context)
        out = self.encoder.encode([self._audio[lo:end]])[0]
        self.encode_calls += 1
        rate = out.frame_rate_hz / SAMPLE_RATE_HZ
        skip = min(out.n_frames, int(round((start - lo) * rate)))
        self._feats.append(out.features[skip:])
        if out.ctc_logits is not None:
            self._logits.append(out.ctc_logits[skip:])
        self._done = end

    def push(self, samples: np.ndarray) -> int:
        """Add audio; encodes every chunk completed by it. Returns the number of chunks encoded."""
        self._audio = np.concatenate([self._audio, np.asarray(samples, dtype=np.float32)])
        n = 0
        while len(self._audio) - self._done >= self.chunk:
            self._encode_span(self._done, self._done + self.chunk)
            n += 1
        return n

    def finish(self) -> EncoderOutput:
        """End of speech: encode the tail and return the whole utterance's frames."""
        if len(self._audio) > self._done or not self._feats:
            self._encode_span(self._done, len(self._audio))
        feats = torch.cat(self._feats, 0)
        logits = torch.cat(self._logits, 0) if self._logits else None
        return EncoderOutput(features=feats, ctc_logits=logits, frame_rate_hz=self.encoder.frame_rate_hz)
