"""VadSegmenter on synthesized speech (espeak-ng) in low white noise."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from assistant.audio import load_audio
from assistant.config import VadConfig
from assistant.vad import SegmentDropped, SpeechEnded, SpeechPaused, SpeechStarted, VadSegmenter
from speech import espeak_wav, silence, speech_bounds, to_pcm16, with_noise

SENTENCE_A = "Please turn on the kitchen light and set a timer for ten minutes"
SENTENCE_B = "What is the weather like tomorrow"


@pytest.fixture(scope="module")
def sentences(tmp_path_factory) -> tuple[np.ndarray, np.ndarray]:
    d = tmp_path_factory.mktemp("espeak")
    a = load_audio(espeak_wav(SENTENCE_A, d / "a.wav")).samples
    b = load_audio(espeak_wav(SENTENCE_B, d / "b.wav")).samples
    return a, b


@pytest.fixture(scope="module")
def two_sentences(sentences) -> tuple[bytes, list[tuple[float, float]]]:
    """1 s silence + A + 1.5 s silence + B + 1 s silence, -50 dBFS noise; and the true speech spans."""
    a, b = sentences
    parts = [silence(1.0), a, silence(1.5), b, silence(1.0)]
    a0, a1 = speech_bounds(a)
    b_off = 1.0 + len(a) / 16000 + 1.5
    b0, b1 = speech_bounds(b)
    truth = [(1.0 + a0, 1.0 + a1), (b_off + b0, b_off + b1)]
    return to_pcm16(with_noise(np.concatenate(parts))), truth


def ended(events) -> list:
    return [e.segment for e in events if isinstance(e, SpeechEnded)]


def run_frames(seg: VadSegmenter, pcm: bytes) -> list:
    events = []
    for off in range(0, len(pcm) - seg.frame_bytes + 1, seg.frame_bytes):
        events += seg(pcm[off:off + seg.frame_bytes])
    return events


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_two_sentences_give_two_segments(two_sentences, frame_ms):
    pcm, truth = two_sentences
    cfg = VadConfig(frame_ms=frame_ms)
    seg = VadSegmenter(cfg)
    assert seg.frame_bytes == 16000 * frame_ms // 1000 * 2
    events = run_frames(seg, pcm) + seg.flush()
    segments = ended(events)
    assert len(segments) == 2, events
    starts = [e.at_s for e in events if isinstance(e, SpeechStarted)]
    assert len(starts) == 2 and not any(isinstance(e, SegmentDropped) for e in events)
    tail_s = cfg.hangover_ms / 2000
    for s, (t0, t1), onset in zip(segments, truth, starts):
        assert s.reason == "silence"
        assert abs(onset - t0) < 0.15, (onset, t0)
        assert s.speech_started_at == onset
        assert s.started_at <= t0 and s.ended_at >= t1  # the whole sentence is inside
        assert abs(s.started_at - (onset - cfg.preroll_ms / 1000)) < 1e-9  # full pre-roll kept
        expected = (t1 - t0) + cfg.preroll_ms / 1000 + tail_s
        assert abs(s.duration_s - expected) < 0.5, (s.duration_s, expected)
        # The pcm is exactly the stream between started_at and ended_at.
        i0, i1 = round(s.started_at * 16000) * 2, round(s.ended_at * 16000) * 2
        assert s.pcm == pcm[i0:i1]
        assert len(s.pcm) == round(s.duration_s * 16000) * 2


def test_feed_odd_chunks_equals_frame_by_frame(two_sentences):
    pcm, _ = two_sentences
    a = VadSegmenter(VadConfig())
    by_frame = run_frames(a, pcm) + a.flush()
    b = VadSegmenter(VadConfig())
    by_chunk, rng, off = [], np.random.default_rng(1), 0
    while off < len(pcm):
        n = int(rng.integers(1, 3001))  # odd sizes split samples in half too
        by_chunk += b.feed(pcm[off:off + n])
        off += n
    by_chunk += b.flush()
    assert by_chunk == by_frame and len(ended(by_chunk)) == 2


def test_long_speech_is_cut_at_max_length(sentences):
    a, _ = sentences
    cfg = VadConfig(max_utterance_s=1.5)
    pcm = to_pcm16(with_noise(np.concatenate([silence(1.0), a, silence(1.0)])))
    seg = VadSegmenter(cfg)
    segments = ended(seg.feed(pcm) + seg.flush())
    assert segments[0].reason == "max_length"
    assert abs(segments[0].duration_s - 1.5) < 1e-9
    # Speech goes on: the next utterance starts right where the cut was (no gap, no overlap).
    assert len(segments) >= 2
    assert 0 <= segments[1].started_at - segments[0].ended_at <= cfg.start_frames * cfg.frame_ms / 1000 + 1e-9
    assert all(s.duration_s <= 1.5 + 1e-9 for s in segments)
    assert segments[-1].reason == "silence"
    total = sum(s.duration_s for s in segments)
    a0, a1 = speech_bounds(a)
    assert total >= a1 - a0


def test_click_is_dropped_as_too_short():
    rng = np.random.default_rng(3)
    click = (rng.standard_normal(800) * 0.3).astype(np.float32)  # 50 ms burst
    pcm = to_pcm16(with_noise(np.concatenate([silence(1.0), click, silence(1.5)])))
    seg = VadSegmenter(VadConfig())
    events = seg.feed(pcm) + seg.flush()
    dropped = [e for e in events if isinstance(e, SegmentDropped)]
    assert not ended(events)
    assert len(dropped) == 1 and dropped[0].reason == "too_short"
    assert 0 < dropped[0].duration_s < VadConfig().min_utterance_s


def test_noise_alone_gives_nothing():
    seg = VadSegmenter(VadConfig())
    assert seg.feed(to_pcm16(with_noise(silence(3.0)))) + seg.flush() == []


def test_frame_size_errors():
    seg = VadSegmenter(VadConfig(frame_ms=20))
    with pytest.raises(ValueError, match=r"959 bytes; expected 640 bytes"):
        seg(b"\0" * 959)
    with pytest.raises(ValueError, match="expected 640"):
        seg(b"")
    with pytest.raises(ValueError, match="8000, 16000, 32000 or 48000"):
        VadSegmenter(VadConfig(), sample_rate_hz=44100)


def test_flush_mid_speech_emits_the_utterance(sentences):
    a, _ = sentences
    pcm = to_pcm16(with_noise(np.concatenate([silence(1.0), a])))[: int(3.0 * 16000) * 2]  # cut mid-sentence
    seg = VadSegmenter(VadConfig())
    events = seg.feed(pcm)
    assert not ended(events) and seg.active
    flushed = ended(seg.flush())
    assert len(flushed) == 1 and flushed[0].reason == "flush"
    assert abs(flushed[0].ended_at - 3.0) < 0.4
    assert not seg.active and seg.flush() == []
    # A flush right after a short blip drops it instead.
    seg2 = VadSegmenter(VadConfig())
    seg2.feed(to_pcm16(with_noise(silence(1.0))) + pcm[int(1.05 * 16000) * 2:int(1.2 * 16000) * 2])
    assert seg2.active
    assert [type(e) for e in seg2.flush()] == [SegmentDropped]


def test_reset_restarts_the_clock(two_sentences):
    pcm, _ = two_sentences
    seg = VadSegmenter(VadConfig())
    first = seg.feed(pcm[: len(pcm) // 3])
    seg.reset()
    assert not seg.active and seg.clock_s == 0.0
    again = seg.feed(pcm) + seg.flush()
    fresh = VadSegmenter(VadConfig())
    assert again == fresh.feed(pcm) + fresh.flush()
    assert first  # the first third holds the start of sentence A


def test_aggressiveness_and_trimmed_tail(two_sentences):
    pcm, truth = two_sentences
    for aggr in (0, 3):
        cfg = replace(VadConfig(), aggressiveness=aggr, hangover_ms=900)
        seg = VadSegmenter(cfg)
        segments = ended(seg.feed(pcm) + seg.flush())
        assert len(segments) == 2
        # Trailing silence is trimmed to about half the hangover, never the whole of it.
        for s, (_, t1) in zip(segments, truth):
            assert s.ended_at - t1 < 0.45 + 0.25


def test_take_new_pcm_hands_out_each_segment_as_it_grows(two_sentences):
    """What the daemon streams to the encoder during speech starts with exactly the segment's audio."""
    pcm, _ = two_sentences
    seg = VadSegmenter(VadConfig())
    taken, finished = bytearray(), []
    block = seg.frame_bytes * 3  # like a source's 90 ms blocks
    for off in range(0, len(pcm), block):
        for e in seg.feed(pcm[off:off + block]):
            if isinstance(e, SpeechStarted):
                taken = bytearray()
            elif isinstance(e, SpeechEnded):
                finished.append((e.segment, bytes(taken)))
        taken += seg.take_new_pcm()
        assert seg.active or not seg.take_new_pcm()
    assert len(finished) == 2
    for segment, streamed in finished:
        assert streamed.startswith(segment.pcm) and len(streamed) - len(segment.pcm) < 16000 * 2


@pytest.mark.parametrize("frame_ms", [10, 30])
def test_speech_paused_announces_the_segment_before_the_hangover_ends(two_sentences, frame_ms):
    """Halfway through the hangover the VAD says which audio the segment will be if the silence holds:
    the daemon transcribes it in the remaining half (services/live.py)."""
    pcm, _ = two_sentences
    cfg = VadConfig(frame_ms=frame_ms)
    seg = VadSegmenter(cfg)
    timed = []  # (stream clock when the event came, event)
    for off in range(0, len(pcm) - seg.frame_bytes + 1, seg.frame_bytes):
        timed += [(seg.clock_s, e) for e in seg(pcm[off:off + seg.frame_bytes])]
    ends = [(t, e.segment) for t, e in timed if isinstance(e, SpeechEnded)]
    assert len(ends) == 2
    for end_clock, segment in ends:
        pauses = [(t, e) for t, e in timed if isinstance(e, SpeechPaused) and t <= end_clock]
        t_pause, last = pauses[-1]  # earlier pauses (inside the sentence) were followed by more speech
        assert last.samples * 2 == len(segment.pcm)
        assert last.at_s == pytest.approx(segment.ended_at) == pytest.approx(t_pause)
        # the end is decided the rest of the hangover later: the time the pause gives
        assert end_clock - t_pause == pytest.approx(cfg.hangover_ms / 2000, abs=frame_ms / 1000 + 1e-9)


def test_no_pause_for_a_sound_too_short_to_keep():
    cfg = VadConfig(min_utterance_s=0.5)
    seg = VadSegmenter(cfg)
    rng = np.random.default_rng(0)
    burst = np.sin(2 * np.pi * 220 * np.arange(4800) / 16000) * 0.5 + rng.normal(0, 0.01, 4800)  # 0.3 s
    pcm = to_pcm16(np.concatenate([silence(1.0), burst, silence(1.5)]).astype(np.float32))
    events = seg.feed(pcm) + seg.flush()
    assert not any(isinstance(e, SpeechPaused) for e in events)
