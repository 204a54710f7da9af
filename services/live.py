"""The utterance being spoken, encoded in chunks on the inference thread while it grows.

At end of speech only the tail is left to encode (bench/latency.py measures what that saves). After
each chunk the utterance so far is also decoded (``Engine.draft_hint``): the final decode then starts
from a draft in the LLM's own words, which leaves fewer passes after end of speech. The
source loop adds audio from the event-loop thread; the inference thread, when it has nothing more
urgent (API calls and finished utterances come first), encodes every completed chunk. The chunks are
a cache, never the record: the utterance's stored audio is what ``Engine.run(stream=...)`` checks
them against, and it encodes the whole utterance again when they do not match.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

log = logging.getLogger(__name__)

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
        self.hint = None  # assistant.engine.engine.DraftHint of the chunks so far
        self.hints = True  # off for the rest of the utterance when decoding cannot keep up with speech
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

    def step(self, engine) -> int:
        """Inference thread: encode every completed chunk, then decode the utterance so far; returns
        the number of chunks encoded."""
        from assistant.engine.streaming import StreamingEncoder

        if self.encoder is None:
            self.encoder = StreamingEncoder(engine.encoder, chunk_s=self.chunk_s, context_s=self.context_s)
        with self._lock:
            pending, self._pending = self._pending, []
        n = self.encoder.push(np.concatenate(pending)) if pending else 0
        self._encoded = self.encoder.samples_encoded
        if n and self.hints and not self.closed:
            t0 = time.perf_counter()
            self.hint = engine.draft_hint(self.encoder.partial())
            spent = time.perf_counter() - t0
            if spent > 0.5 * self.chunk_s:  # the hint would hold up the next chunk and the utterance's end
                self.hints = False
                log.debug("decoding the utterance so far took %.2f s per %.1f s chunk: no more hints for it",
                          spent, self.chunk_s)
        return n
