"""Encoding while the user speaks: StreamingEncoder.finish_for, and the worker's LiveStream path."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from assistant.engine.engine import DraftHint
from assistant.engine.streaming import StreamingEncoder
from assistant.store import open_store, repo
from assistant_services.live import LiveStream
from assistant_services.worker import UtteranceJob

from conftest import noise_wave
from test_worker import make_worker, settle, statuses


def pushed(encoder, wave, chunk_s=0.5, context_s=0.5) -> StreamingEncoder:
    s = StreamingEncoder(encoder, chunk_s=chunk_s, context_s=context_s)
    for i in range(0, len(wave), 480):
        s.push(wave[i:i + 480])
    return s


def test_finish_for_a_trimmed_utterance_reencodes_only_what_the_trim_touched(tiny_engine):
    wave = noise_wave(2.3, 0)
    trimmed = wave[: int(1.7 * 16000)]  # the VAD cut 0.6 s of trailing silence already in a chunk
    s = pushed(tiny_engine.encoder, wave)
    assert s.samples_encoded == 2 * 16000
    calls = s.encode_calls
    got = s.finish_for(trimmed)
    assert s.encode_calls == calls + 1  # one span: from the last kept chunk's end to the trimmed end
    want = pushed(tiny_engine.encoder, trimmed).finish()
    assert got.features.shape == want.features.shape
    torch.testing.assert_close(got.features, want.features)
    full = tiny_engine.encode([trimmed])[0]
    assert got.n_frames == full.n_frames  # chunks add up to the whole


def test_finish_for_other_audio_gives_nothing_to_reuse(tiny_engine):
    s = pushed(tiny_engine.encoder, noise_wave(1.5, 0))
    assert s.finish_for(noise_wave(1.5, 1)) is None


def test_finish_for_an_utterance_shorter_than_a_chunk_encodes_it_whole(tiny_engine):
    wave = noise_wave(0.3, 2)
    s = pushed(tiny_engine.encoder, wave)
    out = s.finish_for(wave)
    assert out is not None and out.n_frames == tiny_engine.encode([wave])[0].n_frames


@pytest.fixture()
def store(tmp_path):
    s = open_store(tmp_path / "data")
    yield s
    s.close()


def _wait(pred, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_worker_encodes_chunks_during_speech_and_only_the_tail_at_the_end(store, tiny_engine, tmp_path):
    w = make_worker(store, tiny_engine, tmp_path)
    try:
        wave = noise_wave(1.8, 3)
        pcm = (np.clip(wave, -1, 1) * 32767).astype("<i2")
        samples = pcm.astype(np.float32) / 32768.0
        live = LiveStream(chunk_s=0.5, context_s=0.5)
        w.open_stream(live)
        for i in range(0, len(pcm), 480):  # 30 ms blocks, as the source loop hands them over
            if live.add_pcm16(pcm[i:i + 480].tobytes()):
                w.kick()
        # every chunk encoded, and the utterance so far decoded into a draft hint
        _wait(lambda: live.encoder is not None and live.encoder.samples_encoded == 3 * 8000
              and (live.hint is not None or not tiny_engine.speculative))
        w.close_stream(live)
        calls = live.encoder.encode_calls
        with store.session() as s:
            uid = repo.record_utterance(s, data_dir=tmp_path / "data", samples=samples, source="mic").id
        w.submit(UtteranceJob(uid, samples, "mic", time.time(), stream=live))
        settle(w, store, 1)
        assert statuses(store)[uid] == "done"
        assert live.encoder.encode_calls == calls + 1  # the 0.3 s tail, nothing else
    finally:
        assert w.stop(60)


def test_worker_falls_back_to_whole_encoding_when_the_stream_does_not_match(store, tiny_engine, tmp_path):
    w = make_worker(store, tiny_engine, tmp_path)
    try:
        live = LiveStream(chunk_s=0.5, context_s=0.5)
        w.open_stream(live)
        live.add_pcm16((noise_wave(1.2, 4) * 32767).astype("<i2").tobytes())
        w.kick()
        _wait(lambda: live.encoder is not None and live.encoder.samples_encoded > 0)
        w.close_stream(live)
        other = noise_wave(1.2, 5)
        with store.session() as s:
            uid = repo.record_utterance(s, data_dir=tmp_path / "data", samples=other, source="mic").id
        w.submit(UtteranceJob(uid, other, "mic", time.time(), stream=live))
        settle(w, store, 1)
        assert statuses(store)[uid] == "done"
    finally:
        assert w.stop(60)


def test_draft_hint_merges_the_llm_words_with_the_rest_of_the_ctc_reading():
    h = DraftHint("set a timer for fif", "set a tmer for fiv")
    assert h.draft("set a tmer for fivteen minutes") == ("set a timer for", "fivteen minutes")
    assert DraftHint("set", "set").draft("set a timer") is None


def test_a_draft_hint_changes_passes_never_the_transcript(tiny_engine):
    wave = noise_wave(2.2, 6)
    s = pushed(tiny_engine.encoder, wave)
    hint = tiny_engine.draft_hint(s.partial())
    enc = s.finish()
    plain, _, _, _ = tiny_engine.transcribe_encoded(enc, 2.2)
    for h in (hint, DraftHint("a b c d", "a b c d")):
        text, _, _, _ = tiny_engine.transcribe_encoded(enc, 2.2, hint=h)
        assert text == plain


def _live_with(w, pcm: np.ndarray, pause_at: int) -> LiveStream:
    live = LiveStream(chunk_s=0.5, context_s=0.5)
    w.open_stream(live)
    for i in range(0, len(pcm), 480):
        if live.add_pcm16(pcm[i:i + 480].tobytes()):
            w.kick()
    live.pause(pause_at)
    w.kick()
    _wait(lambda: live.early is not None)
    w.close_stream(live)
    return live


@pytest.mark.parametrize("ends_at_the_pause", [True, False])
def test_the_pause_guess_is_the_turn_only_when_the_utterance_ends_there(store, tiny_engine, tmp_path,
                                                                          ends_at_the_pause):
    """SpeechPaused: the worker transcribes the guessed utterance before its end is certain; at the end
    that turn is taken as it is when the audio is the same, and recomputed when speech went on."""
    w = make_worker(store, tiny_engine, tmp_path)
    try:
        wave = noise_wave(2.0, 7)
        pcm = (np.clip(wave, -1, 1) * 32767).astype("<i2")
        samples = pcm.astype(np.float32) / 32768.0
        pause_at = int(1.4 * 16000) if ends_at_the_pause else int(1.1 * 16000)
        final = samples[: int(1.4 * 16000)]  # the VAD's segment
        live = _live_with(w, pcm, pause_at)
        guessed = live.early[1]
        assert len(live.early[0]) == pause_at
        calls = live.encoder.encode_calls
        with store.session() as s:
            uid = repo.record_utterance(s, data_dir=tmp_path / "data", samples=final, source="mic").id
        w.submit(UtteranceJob(uid, final, "mic", time.time(), stream=live))
        settle(w, store, 1)
        with store.session() as s:
            u = repo.get_utterance(s, utterance_id=uid)
            timings, transcript = dict(u.timings), u.transcript
        # what the end alone gives from the same chunks (chunked encoding differs from whole encoding)
        want = tiny_engine.run(final, respond=False, stream=pushed(tiny_engine.encoder, final)).transcript
        assert transcript == want  # the same transcript either way
        if ends_at_the_pause:
            assert guessed.transcript == want and "early_by_s" in timings
            assert live.encoder.encode_calls == calls  # nothing encoded after the end
        else:
            assert "early_by_s" not in timings and live.encoder.encode_calls > calls
    finally:
        assert w.stop(60)


def test_a_chunk_with_lookahead_waits_for_its_right_context_and_keeps_only_its_own_frames(tiny_engine):
    enc = tiny_engine.encoder
    wave = noise_wave(2.0, 4)
    s = StreamingEncoder(enc, chunk_s=0.5, context_s=0.5, lookahead_s=0.5)
    s.push(wave[:int(0.9 * 16000)])
    assert s.samples_encoded == 0  # 0.5 s chunk + 0.5 s lookahead not there yet
    s.push(wave[int(0.9 * 16000):int(1.0 * 16000)])
    assert s.samples_encoded == 8000
    # the first chunk's frames are those of [0, 1.0 s) encoded together, cut at the chunk's end
    seen = enc.encode([wave[:16000]])[0]
    part = s.partial()
    assert part.n_frames == enc.frames_for(8000)
    torch.testing.assert_close(part.features, seen.features[:part.n_frames])
    s.push(wave[16000:])
    out = s.finish()
    assert out.n_frames == enc.encode([wave])[0].n_frames  # chunks and tail add up to the whole


def test_finish_for_drops_a_chunk_whose_lookahead_the_trim_cut(tiny_engine):
    wave = noise_wave(2.0, 5)
    s = StreamingEncoder(tiny_engine.encoder, chunk_s=0.5, context_s=0.5, lookahead_s=0.5)
    for i in range(0, len(wave), 480):
        s.push(wave[i:i + 480])
    assert s.samples_encoded == 24000  # chunks up to 1.5 s, each having seen 0.5 s more
    trimmed = wave[:int(1.7 * 16000)]  # the third chunk saw audio up to 2.0 s: past the trimmed end
    got = s.finish_for(trimmed)
    assert s.reused_samples == 16000
    want = StreamingEncoder(tiny_engine.encoder, chunk_s=0.5, context_s=0.5, lookahead_s=0.5)
    want.push(trimmed)
    torch.testing.assert_close(got.features, want.finish().features)
