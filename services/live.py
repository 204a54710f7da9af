"""The utterance being spoken, encoded in chunks on the inference thread while it grows.

At end of speech only the tail is left to encode (bench/latency.py measures what that saves). After
each chunk the utterance so far is also decoded (``Engine.draft_hint``): the final decode then starts
from a draft in the LLM's own words, which leaves fewer passes after end of speech. The
source loop adds audio from the event-loop thread; the inference thread, when it has nothing more
urgent (API calls and finished utterances come first), encodes every completed chunk. The chunks are
a cache, never the record: the utterance's stored audio is what ``Engine.run(stream=...)`` checks
them against, and it encodes the whole utterance again when they do not match.

Halfway through the VAD's hangover (``SpeechPaused``) the audio the utterance will have if the silence
holds is known: the inference thread transcribes it right away (``pause``), in the half hangover left
before the VAD is sure. When the utterance then ends with exactly that audio, on the same bridge, its
turn is already done (``early_turn``); when speech resumed instead, the guess is dropped.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from assistant.units import TARGET_RATE_HZ

log = logging.getLogger(__name__)


class LiveStream:
    def __init__(self, *, chunk_s: float, context_s: float, lookahead_s: float = 0.0) -> None:
        self.chunk_s, self.context_s, self.lookahead_s = chunk_s, context_s, lookahead_s
        self._chunk = int((chunk_s + lookahead_s) * TARGET_RATE_HZ)  # audio past the encoded that completes a chunk
        self._lock = threading.Lock()
        self._pending: list[np.ndarray] = []
        self._added = 0  # samples added in all
        self._encoded = 0  # samples whose chunks are encoded (inference thread)
        self.encoder = None  # assistant.engine.streaming.StreamingEncoder, made on the inference thread
        self.hint = None  # assistant.engine.engine.DraftHint of the chunks so far
        self.hints = True  # off for the rest of the utterance when decoding cannot keep up with speech
        self.closed = False  # the utterance ended or was dropped: no more chunk work
        self._pause_at = 0  # samples: the utterance's audio if the pause the VAD saw becomes its end
        self._guessed_at = 0  # the pause already transcribed
        self.early = None  # (audio, Turn, time.time() when done): the transcript of that guess

    def add_pcm16(self, pcm: bytes) -> bool:
        """Append 16 kHz mono int16 audio (any thread); True when a whole chunk waits to be encoded."""
        if not pcm:
            return False
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0  # as assistant.audio.from_pcm16
        with self._lock:
            self._pending.append(x)
            self._added += len(x)
        return self.ready()

    def pause(self, samples: int) -> None:
        """The VAD's SpeechPaused (any thread): transcribe the first ``samples`` samples as the utterance."""
        with self._lock:
            self._pause_at = samples

    def ready(self) -> bool:
        if self.closed:
            return False
        return self._added - self._encoded >= self._chunk or \
            (self._pause_at != self._guessed_at and self._added >= self._pause_at)

    def early_turn(self, samples: np.ndarray, bridge_version: str):
        """The Turn transcribed at the pause, if the utterance ended there (same audio, same bridge)."""
        if self.early is None:
            return None
        audio, turn, _ = self.early
        if turn.bridge_version != bridge_version or len(audio) != len(samples) or not np.array_equal(audio, samples):
            return None
        return turn

    def step(self, engine) -> int:
        """Inference thread: encode every completed chunk, then transcribe the pause's guess if one
        waits, else decode the utterance so far into a hint; returns the number of chunks encoded."""
        from assistant.engine.streaming import StreamingEncoder

        if self.encoder is None:
            self.encoder = StreamingEncoder(engine.encoder, chunk_s=self.chunk_s, context_s=self.context_s,
                                            lookahead_s=self.lookahead_s)
        with self._lock:
            pending, self._pending = self._pending, []
        n = self.encoder.push(np.concatenate(pending)) if pending else 0
        self._encoded = self.encoder.samples_encoded
        with self._lock:
            target = self._pause_at if self._pause_at != self._guessed_at else 0
        if target and len(self.encoder.audio) >= target and not self.closed:
            # the end the VAD may be about to confirm: the whole turn now, on a fork of the chunks
            self._guessed_at = target
            audio = self.encoder.audio[:target].copy()
            turn = engine.run(audio, respond=False, stream=self.encoder.fork(), hint=self.hint)
            self.early = (audio, turn, time.time())
        elif n and self.hints and not self.closed:
            t0 = time.perf_counter()
            self.hint = engine.draft_hint(self.encoder.partial())
            spent = time.perf_counter() - t0
            if spent > 0.5 * self.chunk_s:  # the hint would hold up the next chunk and the utterance's end
                self.hints = False
                log.debug("decoding the utterance so far took %.2f s per %.1f s chunk: no more hints for it",
                          spent, self.chunk_s)
        return n
