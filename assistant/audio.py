"""Audio in: decode WAV/FLAC/OGG (or raw PCM / arrays) into 16 kHz mono float32.

Every way audio can be unusable becomes an AudioError naming the problem and the fix,
so the CLI and the API can show it as is.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from assistant.errors import AudioError, UnreadableAudioError
from assistant.units import TARGET_RATE_HZ  # the project's one sample rate, importable from here too

log = logging.getLogger(__name__)

MIN_RATE_HZ, MAX_RATE_HZ = 4000, 384000
_ACCEPTED = "send a WAV, FLAC or OGG (Vorbis) file"
_SNIFF_BYTES = 65536 + 4096  # one maximal Ogg page (65307 bytes) fits in the tail we read


# eq=False: a generated __eq__/__hash__ over an ndarray field would raise, not compare.
@dataclass(frozen=True, eq=False)
class Audio:
    samples: np.ndarray  # float32, mono, 16 kHz, shape (n,), values roughly in [-1, 1]
    sample_rate_hz: int = TARGET_RATE_HZ
    source_rate_hz: int = TARGET_RATE_HZ  # what the input had
    source_channels: int = 1
    source_format: str = ""  # e.g. "WAV PCM_16", "FLAC PCM_24", "OGG VORBIS", "raw PCM_16"

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate_hz


def _check_rate(rate: int) -> None:
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise AudioError(
            f"audio sample rate {rate} Hz is absurd (accepted: {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz)",
            fix="record or export the audio at a normal rate such as 16000 or 48000 Hz",
        )


def _check_duration(frames: int, rate: int, min_s: float, max_s: float) -> None:
    if frames <= 0:
        raise AudioError("the audio contains no samples", fix="record something and send it again")
    seconds = frames / rate
    if seconds > max_s:
        raise AudioError(
            f"audio is {seconds:.1f} s long, over the limit of {max_s:g} s",
            fix="send a shorter clip or raise audio.max_duration_s in the config",
        )
    if seconds < min_s:
        raise AudioError(
            f"audio is {seconds:.3f} s long, shorter than the minimum of {min_s:g} s",
            fix="send a longer clip or lower audio.min_duration_s in the config",
        )


def _finish(x: np.ndarray, rate: int, fmt: str, min_s: float, max_s: float) -> Audio:
    """Validate (frames, channels) float samples, downmix, resample to 16 kHz."""
    _check_rate(rate)
    _check_duration(x.shape[0], rate, min_s, max_s)
    if not np.isfinite(x).all():
        raise AudioError(
            "the audio contains NaN or infinite samples",
            fix="re-export the audio; the float samples are corrupt",
        )
    mono = x.mean(axis=1, dtype=np.float64).astype(np.float32) if x.shape[1] > 1 else x[:, 0]
    if rate != TARGET_RATE_HZ:
        mono = soxr.resample(mono, rate, TARGET_RATE_HZ, quality="HQ")
    samples = np.ascontiguousarray(mono, dtype=np.float32)
    log.debug("audio %s %d Hz x%d -> %d samples", fmt, rate, x.shape[1], len(samples))
    return Audio(samples, TARGET_RATE_HZ, rate, x.shape[1], fmt)


def _truncated(detail: str, fix: str = "upload the complete file again") -> AudioError:
    return AudioError(f"the audio is truncated or corrupt: {detail.strip().rstrip('.')}", fix=fix)


def _wav_shortfall(head: bytes, size: int) -> bool:
    """True when a RIFF WAV declares more data bytes than the file holds.

    libsndfile silently shrinks its frame count to what is present, so a cut WAV
    would otherwise decode as a shorter, valid clip.
    """
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return False
    endian = "<" if head[:4] == b"RIFF" else ">"
    pos = 12
    while pos + 8 <= len(head):
        cid, csize = head[pos:pos + 4], struct.unpack(endian + "I", head[pos + 4:pos + 8])[0]
        if cid == b"data":
            # 0 and 0xFFFFFFFF are placeholders streaming writers leave: length unknown.
            return csize not in (0, 0xFFFFFFFF) and size - (pos + 8) < csize
        pos += 8 + csize + (csize & 1)  # chunks are word aligned
    return False


def _ogg_cut(tail: bytes) -> bool:
    """True when an Ogg stream's last page is incomplete or lacks the end-of-stream flag."""
    start = tail.rfind(b"OggS")
    if start < 0 or len(tail) - start < 27:
        return True
    nseg = tail[start + 26]
    lacing = tail[start + 27:start + 27 + nseg]
    page_end = start + 27 + nseg + sum(lacing)
    return len(lacing) < nseg or page_end > len(tail) or not tail[start + 5] & 0x04


def _open_source(source: str | os.PathLike | bytes | BinaryIO) -> BinaryIO:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    if isinstance(source, (str, os.PathLike)):
        try:
            return open(source, "rb")  # noqa: SIM115 - closed by load_audio
        except FileNotFoundError:
            raise AudioError(f"audio file not found: {os.fspath(source)}",
                             fix="check the path") from None
        except OSError as e:
            raise AudioError(f"cannot read audio file {os.fspath(source)}: {e.strerror}",
                             fix="check the path and its permissions") from None
    # soundfile seeks to absolute offsets, so a stream not at 0 (or not seekable) is copied.
    if source.seekable() and source.tell() == 0:
        return source
    return io.BytesIO(source.read())


UNKNOWN_FRAMES = 2**62  # libsndfile's frame count for a stream whose header leaves the length open


def _read_unknown_length(snd: sf.SoundFile, limit: int) -> np.ndarray:
    """Decode a stream of unknown length, at most ``limit`` frames (one more than allowed is enough to
    refuse it). soundfile's ``read`` seeks after reading to keep its position, which libsndfile refuses
    on such a stream, so libsndfile's own read is called; it returns 0 at the end."""
    from soundfile import _ffi, _snd  # the documented C API under soundfile's wrapper

    out = np.empty((limit, snd.channels), dtype=np.float32)
    got = 0
    while got < limit:
        n = _snd.sf_readf_float(snd._file, _ffi.cast("float *", out[got:].ctypes.data), min(65536, limit - got))
        if n <= 0:
            break
        got += int(n)
    return out[:got]


def load_audio(source: str | os.PathLike | bytes | BinaryIO, *,
               max_duration_s: float = 30.0, min_duration_s: float = 0.1) -> Audio:
    """Decode any file libsndfile reads (WAV, FLAC, OGG, ...) into 16 kHz mono float32."""
    f = _open_source(source)
    try:
        size = f.seek(0, io.SEEK_END)
        f.seek(0)
        head = f.read(_SNIFF_BYTES)
        f.seek(max(0, size - _SNIFF_BYTES))
        tail = f.read()
        f.seek(0)
        try:
            snd = sf.SoundFile(f)
        except (sf.SoundFileError, RuntimeError) as e:
            if "malformed" in str(e):  # libsndfile knows the format but cannot parse it
                raise _truncated(str(e).rsplit(":", 1)[-1]) from None
            raise UnreadableAudioError("the data is not a readable audio file", fix=_ACCEPTED) from None
        with snd:
            fmt = f"{snd.format} {snd.subtype}"
            if snd.format in ("WAV", "WAVEX") and _wav_shortfall(head, size):
                raise _truncated("WAV data chunk is shorter than its header says")
            if snd.format == "OGG" and _ogg_cut(tail):
                raise _truncated("Ogg stream ends without its last page")
            _check_rate(snd.samplerate)
            if snd.frames >= UNKNOWN_FRAMES:  # a stream-written FLAC (total_samples = 0): counted by decoding
                limit = int(max_duration_s * snd.samplerate) + 1
                x = _read_unknown_length(snd, limit)
                if x.shape[0] >= limit:
                    raise AudioError(f"audio is longer than the limit of {max_duration_s:g} s (decoded up to it: "
                                     "its header does not say its length)",
                                     fix="send a shorter clip or raise audio.max_duration_s in the config")
                _check_duration(x.shape[0], snd.samplerate, min_duration_s, max_duration_s)
                return _finish(x, snd.samplerate, fmt, min_duration_s, max_duration_s)
            # Refuse by the header before decoding: a 2-hour upload costs nothing.
            _check_duration(snd.frames, snd.samplerate, min_duration_s, max_duration_s)
            try:
                x = snd.read(dtype="float32", always_2d=True)
            except (sf.SoundFileError, RuntimeError) as e:
                raise _truncated(str(e).removeprefix("Error : ")) from None
            if x.shape[0] < snd.frames:
                raise _truncated(f"read {x.shape[0]} of {snd.frames} frames")
            return _finish(x, snd.samplerate, fmt, min_duration_s, max_duration_s)
    finally:
        if f is not source:
            f.close()


def from_pcm16(data: bytes, *, sample_rate_hz: int = TARGET_RATE_HZ, channels: int = 1,
               max_duration_s: float = 30.0, min_duration_s: float = 0.1) -> Audio:
    """Raw little-endian interleaved int16 (microphone and websocket sources)."""
    if channels < 1:
        raise AudioError(f"channel count {channels} is invalid", fix="use 1 or more channels")
    if len(data) % (2 * channels):
        raise _truncated(f"{len(data)} bytes is not a whole number of {channels}-channel "
                         "16-bit frames", fix="send whole little-endian int16 frames")
    x = np.frombuffer(data, dtype="<i2").reshape(-1, channels).astype(np.float32) / 32768.0
    return _finish(x, sample_rate_hz, "raw PCM_16", min_duration_s, max_duration_s)


def from_array(samples: np.ndarray, sample_rate_hz: int, *,
               max_duration_s: float = 30.0, min_duration_s: float = 0.1) -> Audio:
    """Float (taken as is) or integer (scaled to [-1, 1)) samples, shape (n,) or (n, channels)."""
    a = np.asarray(samples)
    if a.ndim not in (1, 2) or a.dtype.kind not in "fiu" or (a.ndim == 2 and a.shape[1] == 0):
        raise AudioError(f"cannot use a {a.dtype} array of shape {a.shape} as audio",
                         fix="pass float or integer samples shaped (n,) or (n, channels)")
    if a.dtype.kind == "f":
        x = a.astype(np.float32)
    else:
        info = np.iinfo(a.dtype)
        half = (int(info.max) + 1) // 2 if a.dtype.kind == "u" else -int(info.min)
        offset = half if a.dtype.kind == "u" else 0
        x = ((a.astype(np.float64) - offset) / half).astype(np.float32)
    x = x[:, None] if x.ndim == 1 else x
    return _finish(x, sample_rate_hz, f"array {a.dtype}", min_duration_s, max_duration_s)


def to_wav_bytes(audio: Audio) -> bytes:
    """16-bit PCM WAV of the (16 kHz) samples, for storing utterances."""
    buf = io.BytesIO()
    # Clip here rather than rely on libsndfile's float->int clipping (version/setting dependent).
    sf.write(buf, np.clip(audio.samples, -1.0, 1.0), audio.sample_rate_hz,
             format="WAV", subtype="PCM_16")
    return buf.getvalue()
