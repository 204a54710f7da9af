"""Audio in: every fixture is generated here with numpy + soundfile (fixed seeds)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from assistant.audio import TARGET_RATE_HZ, Audio, from_array, from_pcm16, load_audio, to_wav_bytes
from assistant.errors import AudioError

AMP = 0.5
FREQ = 440.0
RATES = [8000, 16000, 22050, 44100, 48000]
SUBTYPES = {
    "WAV": ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"],
    "FLAC": ["PCM_16", "PCM_24"],
    "OGG": ["VORBIS"],
}
EXT = {"WAV": "wav", "FLAC": "flac", "OGG": "ogg"}


def sine(rate: int, seconds: float = 1.0, freq: float = FREQ, amp: float = AMP) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float64)


def fixture_signal(rate: int, channels: int) -> np.ndarray:
    """Mono: the sine. Stereo: L=sine, R=sine/2, so a correct downmix is 0.75 * sine."""
    x = sine(rate)
    return x if channels == 1 else np.stack([x, 0.5 * x], axis=1)


def encode(data: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def dominant_hz(samples: np.ndarray, rate: int = TARGET_RATE_HZ) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def assert_is_sine(audio: Audio, gain: float, rel_tol: float, length: int = TARGET_RATE_HZ) -> None:
    s = audio.samples
    assert audio.sample_rate_hz == TARGET_RATE_HZ
    assert s.dtype == np.float32 and s.ndim == 1 and s.flags["C_CONTIGUOUS"]
    assert abs(len(s) - length) <= 4
    assert abs(dominant_hz(s) - FREQ) <= 5
    assert rms(s) == pytest.approx(gain * AMP / np.sqrt(2), rel=rel_tol)
    assert np.abs(s).max() <= 1.0


MATRIX = [
    pytest.param(fmt, subtype, rate, ch, id=f"{fmt}-{subtype}-{rate}-{ch}ch")
    for fmt, subtypes in SUBTYPES.items()
    for subtype in subtypes
    for rate in RATES
    for ch in (1, 2)
]


@pytest.mark.parametrize(("fmt", "subtype", "rate", "channels"), MATRIX)
def test_decode_matrix(tmp_path: Path, fmt: str, subtype: str, rate: int, channels: int) -> None:
    path = tmp_path / f"tone.{EXT[fmt]}"
    sf.write(path, fixture_signal(rate, channels), rate, format=fmt, subtype=subtype)
    audio = load_audio(path)
    assert (audio.source_rate_hz, audio.source_channels) == (rate, channels)
    assert audio.source_format == f"{fmt} {subtype}"
    assert audio.duration_s == pytest.approx(1.0, abs=1e-3)
    lossy = fmt == "OGG"
    assert_is_sine(audio, gain=1.0 if channels == 1 else 0.75, rel_tol=0.15 if lossy else 0.02)


def test_stereo_downmix_is_the_average() -> None:
    x = sine(TARGET_RATE_HZ)
    audio = load_audio(encode(np.stack([x, -0.5 * x], axis=1), TARGET_RATE_HZ, "WAV", "FLOAT"))
    np.testing.assert_allclose(audio.samples, 0.25 * x, atol=1e-6)


def test_many_channels() -> None:
    x = sine(48000)
    audio = load_audio(encode(np.stack([x] * 6, axis=1), 48000, "WAV", "PCM_16"))
    assert audio.source_channels == 6
    assert_is_sine(audio, gain=1.0, rel_tol=0.02)


# --- sources -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flac_bytes() -> bytes:
    return encode(fixture_signal(44100, 2), 44100, "FLAC", "PCM_16")


def test_from_bytes_bytearray_and_memoryview(flac_bytes: bytes) -> None:
    for src in (flac_bytes, bytearray(flac_bytes), memoryview(flac_bytes)):
        assert_is_sine(load_audio(src), gain=0.75, rel_tol=0.02)


def test_from_file_objects(tmp_path: Path, flac_bytes: bytes) -> None:
    path = tmp_path / "a.flac"
    path.write_bytes(flac_bytes)
    with open(path, "rb") as fh:
        assert_is_sine(load_audio(fh), gain=0.75, rel_tol=0.02)
        assert not fh.closed  # the caller's file stays the caller's
    assert_is_sine(load_audio(str(path)), gain=0.75, rel_tol=0.02)
    assert_is_sine(load_audio(io.BytesIO(flac_bytes)), gain=0.75, rel_tol=0.02)


def test_from_unseekable_and_offset_streams(flac_bytes: bytes) -> None:
    class Unseekable(io.BytesIO):
        def seekable(self) -> bool:
            return False

    assert_is_sine(load_audio(Unseekable(flac_bytes)), gain=0.75, rel_tol=0.02)
    prefixed = io.BytesIO(b"junk" + flac_bytes)
    prefixed.seek(4)  # e.g. a multipart body already read past its preamble
    assert_is_sine(load_audio(prefixed), gain=0.75, rel_tol=0.02)


# --- bad input ---------------------------------------------------------------------------


def refused(source, *words: str, **kwargs) -> AudioError:
    with pytest.raises(AudioError) as info:
        load_audio(source, **kwargs)
    err = info.value
    assert err.problem and err.fix, "every AudioError names the problem and the fix"
    for word in words:
        assert word in str(err)
    return err


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(0).bytes(4096),
        b"hello, this is plainly a text file\n" * 20,
        b'{"audio": "not really", "rate": 16000}',
        b"",
        b"RIFF",
    ],
    ids=["random", "text", "json", "empty-bytes", "riff-magic-only"],
)
def test_not_audio(data: bytes) -> None:
    err = refused(data)
    assert "not a readable audio file" in str(err) or "truncated" in str(err)
    if not data.startswith(b"RIFF"):
        assert "not a readable audio file" in str(err) and "WAV, FLAC or OGG" in str(err)


def test_text_file_path(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("shopping list: milk, eggs\n" * 10)
    refused(path, "not a readable audio file")


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_24")])
@pytest.mark.parametrize("keep", [0.3, 0.5, 0.9, 0.99])
def test_truncated(fmt: str, subtype: str, keep: float) -> None:
    data = encode(fixture_signal(22050, 2), 22050, fmt, subtype)
    refused(data[: int(len(data) * keep)], "truncated")


def test_truncated_flac_at_a_frame_boundary() -> None:
    # A cut exactly between FLAC frames decodes cleanly up to the cut, then libsndfile fails.
    data = encode(sine(16000, seconds=3.0), 16000, "FLAC", "PCM_16")
    sync = data.find(b"\xff\xf8", data.find(b"\xff\xf8", 100) + 2)  # start of the 2nd frame
    assert sync > 0
    refused(data[:sync], "truncated")


def _length_unknown(flac: bytes) -> bytes:
    """A stream-written FLAC: STREAMINFO's 36-bit total_samples (after the 4-byte block header) left 0."""
    data = bytearray(flac)
    assert data[:4] == b"fLaC"
    data[8 + 13] &= 0xF0
    data[8 + 14:8 + 18] = b"\0\0\0\0"
    return bytes(data)


def test_a_flac_of_unknown_length_is_decoded_and_counted() -> None:
    x = sine(16000, seconds=3.0)
    audio = load_audio(_length_unknown(encode(x, 16000, "FLAC", "PCM_16")))
    assert audio.samples.shape[0] == 48000 and np.allclose(audio.samples, x, atol=1e-3)
    with pytest.raises(AudioError, match="longer than the limit of 2 s"):
        load_audio(_length_unknown(encode(x, 16000, "FLAC", "PCM_16")), max_duration_s=2.0)
    with pytest.raises(AudioError, match="shorter than the minimum"):
        load_audio(_length_unknown(encode(x[:800], 16000, "FLAC", "PCM_16")))


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_ogg(keep: float) -> None:
    data = encode(sine(16000, seconds=2.0)[:, None], 16000, "OGG", "VORBIS")
    refused(data[: int(len(data) * keep)], "truncated")


def test_truncated_raw_pcm() -> None:
    with pytest.raises(AudioError, match="truncated"):
        from_pcm16(b"\x00" * 3201)


def test_streaming_wav_placeholder_size_is_not_truncation() -> None:
    # Streaming writers leave the data size at 0xFFFFFFFF: length unknown, not truncated.
    data = bytearray(encode(sine(16000), 16000))
    pos = data.find(b"data")
    data[pos + 4 : pos + 8] = b"\xff\xff\xff\xff"
    assert_is_sine(load_audio(bytes(data)), gain=1.0, rel_tol=0.02)


def test_wav_with_extra_chunk_before_data() -> None:
    data = encode(sine(16000), 16000)
    pos = data.find(b"data")
    junk = b"LIST" + (5).to_bytes(4, "little") + b"abcde\x00"  # odd size: padded
    assert_is_sine(load_audio(data[:pos] + junk + data[pos:]), gain=1.0, rel_tol=0.02)


def test_no_samples() -> None:
    refused(encode(np.zeros((0, 1)), 16000), "no samples")
    with pytest.raises(AudioError, match="no samples"):
        from_pcm16(b"")
    with pytest.raises(AudioError, match="no samples"):
        from_array(np.zeros(0, dtype=np.float32), 16000)


def test_too_short() -> None:
    refused(encode(sine(16000, seconds=0.05), 16000), "0.050 s", "min_duration_s")
    assert load_audio(encode(sine(16000, 0.05), 16000), min_duration_s=0.01).duration_s == 0.05


def test_too_long_is_refused_from_the_header(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "ten_minutes.wav"
    sf.write(path, np.zeros(8000 * 600, dtype=np.int16), 8000, subtype="PCM_16")

    def no_decoding(*args, **kwargs):
        raise AssertionError("a too-long file must be refused before decoding")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    refused(path, "600.0 s", "30 s", "audio.max_duration_s")
    refused(path, "max_duration_s", max_duration_s=60.0)


def test_non_finite_samples() -> None:
    for bad in (np.nan, np.inf, -np.inf):
        x = sine(16000)
        x[100] = bad
        refused(encode(x, 16000, "WAV", "FLOAT"), "NaN or infinite")
        refused(encode(x, 16000, "WAV", "DOUBLE"), "NaN or infinite")
        with pytest.raises(AudioError, match="NaN"):
            from_array(x, 16000)


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "missing.wav"
    refused(missing, "not found", str(missing))
    refused(str(missing), "not found", str(missing))


def test_directory_path(tmp_path: Path) -> None:
    refused(tmp_path, "cannot read audio file")


@pytest.mark.parametrize("rate", [1000, 3999, 400_000])
def test_absurd_sample_rate(rate: int) -> None:
    refused(encode(sine(rate, seconds=1.0)[: max(rate // 2, 1)], rate), f"{rate} Hz", "absurd")
    with pytest.raises(AudioError, match="absurd"):
        from_array(np.zeros(rate), rate)


# --- raw PCM / arrays / WAV out ----------------------------------------------------------


def test_from_pcm16_round_trip() -> None:
    ints = np.round(sine(16000) * 32767).astype("<i2")
    audio = from_pcm16(ints.tobytes())
    assert audio.source_format == "raw PCM_16"
    np.testing.assert_array_equal(audio.samples, ints.astype(np.float32) / 32768)
    assert_is_sine(audio, gain=1.0, rel_tol=0.01)


def test_from_pcm16_stereo_48k() -> None:
    ints = np.round(fixture_signal(48000, 2) * 32767).astype("<i2")
    audio = from_pcm16(ints.tobytes(), sample_rate_hz=48000, channels=2)
    assert (audio.source_rate_hz, audio.source_channels) == (48000, 2)
    assert_is_sine(audio, gain=0.75, rel_tol=0.02)
    with pytest.raises(AudioError, match="channel"):
        from_pcm16(ints.tobytes(), channels=0)


@pytest.mark.parametrize(
    ("dtype", "scale", "offset"),
    [("float64", 1.0, 0), ("float32", 1.0, 0), ("int16", 32768, 0), ("int32", 2**31, 0),
     ("int8", 128, 0), ("uint8", 128, 128)],
)
def test_from_array_scaling(dtype: str, scale: float, offset: int) -> None:
    x = sine(16000)
    raw = np.round(x * (scale - 1)) + offset if scale != 1.0 else x
    audio = from_array(raw.astype(dtype), 16000)
    assert audio.source_format == f"array {dtype}"
    np.testing.assert_allclose(audio.samples, x, atol=2.5 / scale if scale != 1.0 else 1e-7)


def test_from_array_stereo_resampled_and_rejects_bad_shapes() -> None:
    audio = from_array(fixture_signal(22050, 2).astype(np.float32), 22050)
    assert audio.source_channels == 2
    assert_is_sine(audio, gain=0.75, rel_tol=0.02)
    for bad in (np.zeros((10, 10, 2)), np.array(["a", "b"]), np.zeros((16000, 0))):
        with pytest.raises(AudioError, match="cannot use"):
            from_array(bad, 16000)


def test_to_wav_bytes_round_trip() -> None:
    audio = from_array(sine(44100, seconds=1.5), 44100)
    wav = to_wav_bytes(audio)
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    info = sf.info(io.BytesIO(wav))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    back = load_audio(wav)
    assert back.source_format == "WAV PCM_16" and len(back.samples) == len(audio.samples)
    np.testing.assert_allclose(back.samples, audio.samples, atol=1.5 / 32768)


def test_to_wav_bytes_clips_instead_of_wrapping() -> None:
    loud = Audio(np.array([1.5, -1.5, 0.25] * 1000, dtype=np.float32))
    back = load_audio(to_wav_bytes(loud))
    assert back.samples[0] > 0.99 and back.samples[1] < -0.99
    assert back.samples[2] == pytest.approx(0.25, abs=1e-4)
