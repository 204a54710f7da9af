"""Voice activity segmentation on webrtcvad: a streaming state machine (in the style of silero's VADIterator).

Feed it 16 kHz mono int16 PCM, get events back:

- ``SpeechStarted(at_s)`` when ``start_frames`` consecutive voiced frames are seen; ``at_s`` is the start
  of the first of them (the speech onset, without the pre-roll);
- ``SpeechEnded(segment)`` when an utterance is complete: ``hangover_ms`` of unvoiced frames
  (reason ``"silence"``), ``max_utterance_s`` reached (``"max_length"``) or end of stream (``"flush"``);
- ``SegmentDropped(duration_s)`` instead of ``SpeechEnded`` when the speech was shorter than
  ``min_utterance_s``;
- ``SpeechPaused(samples)`` halfway through the hangover (``hangover_ms / 2`` of unvoiced frames), for an
  utterance long enough to be kept: if the silence holds, the ``SpeechEnded`` segment will be exactly
  the first ``samples`` samples of the utterance's audio. The rest of the hangover is time a consumer
  can spend transcribing that audio before the end is certain (the daemon does: services/live.py).

Segment audio = up to ``preroll_ms`` before the onset (so soft word starts the VAD missed are kept)
+ the speech + trailing silence trimmed to about ``hangover_ms / 2`` (the whole hangover would hand the
recognizer up to 600 ms of nothing; a short tail keeps word endings the VAD calls silence). The trimmed
frames seed the next pre-roll, so no audio between segments is both lost and needed.

The "speech duration" compared with ``min_utterance_s`` runs from the onset to the end of the last voiced
frame: pre-roll and tail are excluded, otherwise a 50 ms click would pass as a 0.65 s utterance.

webrtcvad's votes on the first 150 ms after construction or ``reset()`` are ignored (see _WARMUP_MS).
Times are on the stream clock: samples fed since construction or ``reset()``, divided by the sample rate.
Nothing here is thread-safe; one segmenter belongs to one consumer.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Union

import webrtcvad

from assistant.config import VadConfig
from assistant.units import TARGET_RATE_HZ

log = logging.getLogger(__name__)

_SAMPLE_BYTES = 2  # int16 mono
# webrtcvad's noise model starts empty: it calls its first ~100 ms voiced whatever they hold (measured
# 3-11 frames on -70..-30 dBFS white noise). Those votes are ignored; the audio still serves as pre-roll,
# so speech right at the stream start triggers a little later but loses nothing.
_WARMUP_MS = 150


@dataclass(frozen=True)
class SpeechSegment:
    """One utterance cut by the VAD."""

    pcm: bytes  # 16 kHz mono int16 little-endian, pre-roll included
    started_at: float  # stream-clock seconds where ``pcm`` starts
    ended_at: float  # stream-clock seconds where ``pcm`` ends
    reason: str  # "silence" | "max_length" | "flush"
    speech_started_at: float = 0.0  # the onset (started_at + pre-roll actually kept)

    @property
    def duration_s(self) -> float:
        return self.ended_at - self.started_at


@dataclass(frozen=True)
class SpeechStarted:
    at_s: float  # onset of the voiced run that triggered (pre-roll excluded)


@dataclass(frozen=True)
class SpeechEnded:
    segment: SpeechSegment


@dataclass(frozen=True)
class SegmentDropped:
    duration_s: float  # speech duration (onset to last voiced frame)
    reason: str = "too_short"


@dataclass(frozen=True)
class SpeechPaused:
    samples: int  # the utterance's audio so far (pre-roll included): its segment if the silence holds
    at_s: float  # stream-clock time of the pause (the end of that audio)


VadEvent = Union[SpeechStarted, SpeechEnded, SegmentDropped, SpeechPaused]


class VadSegmenter:
    def __init__(self, config: VadConfig, sample_rate_hz: int = TARGET_RATE_HZ) -> None:
        if sample_rate_hz not in (8000, 16000, 32000, 48000):
            raise ValueError(f"webrtcvad supports 8000, 16000, 32000 or 48000 Hz, not {sample_rate_hz}")
        self.config = config
        self.sample_rate_hz = sample_rate_hz
        self.frame_samples = sample_rate_hz * config.frame_ms // 1000
        self.frame_bytes = self.frame_samples * _SAMPLE_BYTES
        self._warmup_frames = -(-_WARMUP_MS // config.frame_ms)
        self._preroll_frames = config.preroll_ms // config.frame_ms
        self._hangover_frames = -(-config.hangover_ms // config.frame_ms)  # ceil: at least hangover_ms
        self._tail_frames = -(-self._hangover_frames // 2)
        # max_utterance_s is a cap on the segment's audio; floor so we never exceed it.
        self._max_frames = max(1, int(config.max_utterance_s * 1000) // config.frame_ms)
        self.reset()

    # -- public -------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything, including the clock and any buffered partial frame."""
        self._pos = 0  # frames seen since reset (the stream clock)
        self._vad = webrtcvad.Vad(self.config.aggressiveness)  # fresh: same input, same events
        self._partial = bytearray()
        self._idle()
        # Idle: the last pre-roll + start_frames frames, so a trigger can reach back past its own run.
        self._ring: deque[bytes] = deque(maxlen=self._preroll_frames + self.config.start_frames)

    def __call__(self, frame: bytes) -> list[VadEvent]:
        """Process exactly one frame of ``frame_bytes`` bytes."""
        if len(frame) != self.frame_bytes:
            raise ValueError(f"VAD frame is {len(frame)} bytes; expected {self.frame_bytes} bytes "
                             f"({self.config.frame_ms} ms of {self.sample_rate_hz} Hz mono int16)")
        voiced = self._vad.is_speech(bytes(frame), self.sample_rate_hz) and self._pos >= self._warmup_frames
        events: list[VadEvent] = []
        index = self._pos
        self._pos += 1
        if self._seg is None:
            self._step_idle(bytes(frame), voiced, index, events)
        else:
            self._step_active(bytes(frame), voiced, index, events)
        return events

    def feed(self, pcm: bytes) -> list[VadEvent]:
        """Process any amount of PCM; a trailing partial frame waits for the next call."""
        if len(pcm) % _SAMPLE_BYTES and not len(self._partial) % _SAMPLE_BYTES:
            log.debug("odd PCM chunk of %d bytes; the half sample waits for the next chunk", len(pcm))
        self._partial += pcm
        events: list[VadEvent] = []
        n = len(self._partial) // self.frame_bytes * self.frame_bytes
        for off in range(0, n, self.frame_bytes):
            events += self(bytes(self._partial[off:off + self.frame_bytes]))
        del self._partial[:n]
        return events

    def flush(self) -> list[VadEvent]:
        """End of stream: emit (or drop) an utterance in progress. A partial frame is discarded.

        The clock keeps running, so feeding after a flush continues the same timeline.
        """
        self._partial.clear()
        events: list[VadEvent] = []
        if self._seg is not None:
            self._finish("flush", events)
        self._idle()
        self._ring.clear()
        return events

    def take_new_pcm(self) -> bytes:
        """PCM of the utterance in progress not taken yet (pre-roll first; empty when idle): lets the
        encoder start on an utterance while it is spoken. Its SpeechSegment's pcm starts with the same
        bytes, less any trailing silence the end trims."""
        if self._seg is None:
            return b""
        new = self._seg[self._taken:]
        self._taken = len(self._seg)
        return b"".join(new)

    @property
    def active(self) -> bool:
        """True while an utterance is in progress."""
        return self._seg is not None

    @property
    def clock_s(self) -> float:
        return self._pos * self.frame_samples / self.sample_rate_hz

    # -- state machine ------------------------------------------------------------------------------

    def _idle(self) -> None:
        self._seg: list[bytes] | None = None
        self._seg_start = 0  # frame index of the segment's first frame
        self._onset = 0  # frame index of the first voiced frame of the triggering run
        self._last_voiced = 0  # frame index of the last voiced frame
        self._run = 0  # consecutive voiced frames (idle) / consecutive unvoiced frames (active)
        self._taken = 0  # frames of the segment handed out by take_new_pcm

    def _t(self, frame_index: int) -> float:
        return frame_index * self.frame_samples / self.sample_rate_hz

    def _step_idle(self, frame: bytes, voiced: bool, index: int, events: list[VadEvent]) -> None:
        self._ring.append(frame)
        self._run = self._run + 1 if voiced else 0
        if self._run < self.config.start_frames:
            return
        onset = index - self.config.start_frames + 1
        kept = list(self._ring)
        self._seg = kept
        self._seg_start = index + 1 - len(kept)
        self._onset = onset
        self._last_voiced = index
        self._run = 0
        self._ring.clear()
        events.append(SpeechStarted(self._t(onset)))
        self._check_max(events)

    def _step_active(self, frame: bytes, voiced: bool, index: int, events: list[VadEvent]) -> None:
        assert self._seg is not None
        self._seg.append(frame)
        if voiced:
            self._run = 0
            self._last_voiced = index
        else:
            self._run += 1
            if self._run >= self._hangover_frames:
                self._finish("silence", events)
                return
            if self._run == self._tail_frames and \
                    self._t(self._last_voiced + 1 - self._onset) >= self.config.min_utterance_s:
                # _finish("silence") trims the unvoiced run to _tail_frames: the frames so far, exactly
                events.append(SpeechPaused(len(self._seg) * self.frame_samples, self._t(index + 1)))
        self._check_max(events)

    def _check_max(self, events: list[VadEvent]) -> None:
        if self._seg is not None and len(self._seg) >= self._max_frames:
            # Cut and go idle with an empty ring: if speech goes on, the next segment starts exactly
            # where this one ends (start_frames later at most), with no overlapping audio.
            self._finish("max_length", events)

    def _finish(self, reason: str, events: list[VadEvent]) -> None:
        assert self._seg is not None
        frames = self._seg
        trailing = len(frames) - 1 - (self._last_voiced - self._seg_start)  # unvoiced frames at the end
        # A max_length cut keeps everything: the audio right after it belongs to the next segment.
        cut = 0 if reason == "max_length" else max(0, trailing - self._tail_frames)
        trimmed = frames[len(frames) - cut:] if cut else []
        kept = frames[:len(frames) - cut]
        speech_s = self._t(self._last_voiced + 1 - self._onset)
        if speech_s < self.config.min_utterance_s:
            events.append(SegmentDropped(speech_s))
            log.debug("dropped %.3f s of speech at %.2f s (min %.2f s)", speech_s, self._t(self._onset),
                      self.config.min_utterance_s)
        else:
            start = self._seg_start
            seg = SpeechSegment(b"".join(kept), self._t(start), self._t(start + len(kept)), reason,
                                self._t(self._onset))
            events.append(SpeechEnded(seg))
        self._idle()
        if reason != "max_length":
            # The trimmed silence directly precedes what comes next: it is the next pre-roll.
            self._ring.clear()
            self._ring.extend(trimmed)
