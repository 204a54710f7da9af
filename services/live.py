"""The utterance being spoken, encoded in chunks on the inference thread while it grows.

At end of speech only the tail is left to encode (bench/latency.py measures what that saves). The
source loop adds audio from the event-loop thread; the inference thread, when it has nothing more
urgent (API calls and finished utterances come first), encodes every completed chunk. The chunks are
a cache, never the record: the utterance's stored audio is what ``Engine.run(stream=...)`` checks
them against, and it encodes the whole utterance again when they do not match.
"""

from __future__ import annotations

import threading

import numpy as np

SAMPLE_RATE_HZ = 16000


class LiveStream:
    def __init__(self, *, chunk_s: float, context_s: float) -> None:
        self.chunk_s, self.context_s = chunk_s, context_s
        self._chunk = int(chunk_s * SAMPLE_RATE_HZ)
        self._lock = threading.Lock()
        self._pending: list[np.ndarray] = []
        self._added = 0  # samples added in all
        self._encoded = 0  # samples whose chunks are encoded (inference thread)
        self.encoder = None  # assistant.engine.streaming.StreamingEncoder, made on the inference thread
        self.closed = False  # the utterance ended or was dropped: no more chunk work

    def add_pcm16(self, pcm: bytes) -> bool:
        """Append 16 kHz mono int16 audio (any thread); True when a whole chunk waits to be encoded."""
        if not pcm:
            return False
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0  # as assistant.audio.from_pcm16
        with self._lock:
            self._pending.append(x)
            self._added += len(x)
        return self.ready()

    def ready(self) -> bool:
        return not self.closed and self._added - self._encoded >= self._chunk

    def step(self, encoder) -> int:
        """Inference thread: encode every completed chunk; returns how many."""
        from assistant.engine.streaming import StreamingEncoder

        if self.encoder is None:
            self.encoder = StreamingEncoder(encoder, chunk_s=self.chunk_s, context_s=self.context_s)
        with self._lock:
            pending, self._pending = self._pending, []
        n = self.encoder.push(np.concatenate(pending)) if pending else 0
        self._encoded = self.encoder.samples_encoded
        return n
