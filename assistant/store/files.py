"""Utterance audio and cached encoder outputs as private files under the data dir.

``<data_dir>/audio/<id>.wav`` (16-bit PCM WAV) and ``<data_dir>/encoded/<id>.safetensors`` (float16).
Every file is written to a temporary name, fsynced, renamed over the final name and the directory
fsynced: after a crash or power cut a path either holds a complete file or nothing. Directories are
0700 and files 0600 (recordings of the user's voice). Paths stored in the database are relative to the
data dir so the whole dir can be moved.

numpy/torch/safetensors are imported inside the functions: importing the store stays light.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Iterable

from assistant.errors import DiskFullError, RefusedError, StoreError
from assistant.units import TARGET_RATE_HZ

if TYPE_CHECKING:
    from assistant.engine.encoder import EncoderOutput

log = logging.getLogger(__name__)

AUDIO_DIR = "audio"
ENCODED_DIR = "encoded"
ENCODED_FORMAT = "assistant-encoded"
_TMP_SUFFIX = ".tmp"
_STALE_TMP_S = 3600.0  # temp files older than this are leftovers of a crash, not a write in progress
_FP16_MAX = 65504.0


def audio_relpath(utterance_id: int) -> str:
    return f"{AUDIO_DIR}/{int(utterance_id)}.wav"


def encoded_relpath(utterance_id: int) -> str:
    return f"{ENCODED_DIR}/{int(utterance_id)}.safetensors"


def check_relpath(rel: str) -> str:
    """A stored path must stay inside the data dir: relative, no '..' (rows are shown to API clients)."""
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel:
        raise RefusedError(f"stored file path {rel!r} must be relative to the data dir, without '..'")
    return rel


def resolve(data_dir: Path, rel: str) -> Path:
    return Path(data_dir) / check_relpath(rel)


def os_error(exc: OSError, path: Path, data_dir: Path) -> StoreError:
    """One clear StoreError for a failed file operation; the caller has already cleaned up."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(
            f"no space left on the disk holding the data dir {data_dir}: could not write {path}",
            fix="free disk space, or lower store.retention_days / store.retention_max_mb, or move data_dir "
                "to a larger disk; nothing stored was deleted")
    if exc.errno == errno.EROFS:
        return StoreError(f"the data dir {data_dir} is on a read-only file system: could not write {path}",
                          fix="remount it read-write or set data_dir to a writable place")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StoreError(f"permission denied writing {path}",
                          fix=f"make {data_dir} owned and writable by the user running the assistant")
    return StoreError(f"could not write {path}: {exc.strerror or exc}",
                      fix=f"check the disk and file system holding {data_dir}")


def ensure_private_dir(path: Path, data_dir: Path | None = None) -> None:
    """Create ``path`` (and parents) with mode 0700; an existing dir of ours is set back to 0700."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (path.stat().st_mode & 0o777) != 0o700:
            os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
    except OSError as exc:
        raise os_error(exc, path, data_dir or path) from exc


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX needs the directory entry itself flushed)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # some file systems cannot fsync a directory
            raise
    finally:
        os.close(fd)


def write_private_file(data_dir: Path, rel: str, data: bytes) -> Path:
    """Atomically write ``data`` to ``<data_dir>/<rel>`` with mode 0600; no partial file on any error."""
    data_dir = Path(data_dir)
    target = resolve(data_dir, rel)
    ensure_private_dir(target.parent, data_dir)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{_TMP_SUFFIX}"
    fd: int | None = None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        os.fchmod(fd, 0o600)  # exact mode whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
        fd = None
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException as exc:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise os_error(exc, target, data_dir) from exc
        raise
    return target


def _writer_gone(path: Path) -> bool:
    """True when the process that wrote temp file ``path`` (its pid is in the name) no longer runs."""
    try:
        pid = int(path.name.rsplit(".", 3)[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. another user's process: alive
        return False
    return False


def sweep_temp_files(data_dir: Path) -> int:
    """Remove temp files a crash left behind: those whose writer (the pid in the name) is gone, and any
    older than an hour (a reused pid); a young one of a live process may be a write in progress."""
    removed = 0
    cutoff = time.time() - _STALE_TMP_S
    for sub in (AUDIO_DIR, ENCODED_DIR):
        for p in (Path(data_dir) / sub).glob(f".*{_TMP_SUFFIX}"):
            try:
                if p.stat().st_mtime < cutoff or _writer_gone(p):
                    p.unlink()
                    removed += 1
            except OSError as exc:
                log.warning("could not remove the stale temp file %s: %s", p, exc)
    return removed


def file_size(data_dir: Path, rel: str | None) -> int:
    if not rel:
        return 0
    try:
        return resolve(data_dir, rel).stat().st_size
    except (OSError, RefusedError):
        return 0


def remove_files(data_dir: Path, rels: Iterable[str | None]) -> int:
    """Delete stored files; missing ones are fine. Returns the bytes freed. Never raises: it runs after
    a commit, when the rows are already gone and a leftover file is only wasted space."""
    freed = 0
    for rel in rels:
        if not rel:
            continue
        try:
            path = resolve(data_dir, rel)
            size = path.stat().st_size
            path.unlink()
            freed += size
        except FileNotFoundError:
            continue
        except (OSError, RefusedError) as exc:
            log.warning("could not delete the stored file %s under %s: %s", rel, data_dir, exc)
    return freed


# --- audio -------------------------------------------------------------------------------------------------
def write_audio(data_dir: Path, utterance_id: int, samples: Any, *,
                sample_rate_hz: int = TARGET_RATE_HZ) -> tuple[str, str]:
    """Store float32 mono samples (or an ``assistant.audio.Audio``) as 16-bit PCM WAV.

    Returns (path relative to the data dir, sha256 hex of the WAV file's bytes).
    """
    import numpy as np

    from assistant.audio import Audio, to_wav_bytes

    if isinstance(samples, Audio):
        audio = samples
    else:
        arr = np.asarray(samples, dtype=np.float32)
        if arr.ndim != 1:
            raise RefusedError(f"utterance audio must be mono samples shaped (n,), got shape {arr.shape}")
        audio = Audio(samples=arr, sample_rate_hz=sample_rate_hz)
    data = to_wav_bytes(audio)
    rel = audio_relpath(utterance_id)
    write_private_file(data_dir, rel, data)
    return rel, hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- cached encoder outputs ----------------------------------------------------------------------------------
def write_encoded(data_dir: Path, utterance_id: int, encoded: "EncoderOutput") -> tuple[str, int]:
    """Cache one encoder output as float16 safetensors. Returns (relative path, frames)."""
    import torch
    from safetensors.torch import save

    def half(t: torch.Tensor) -> torch.Tensor:
        # Clamp first: a value past float16's range would be stored as inf and poison training.
        return t.detach().to("cpu", torch.float32).clamp(-_FP16_MAX, _FP16_MAX).to(torch.float16).contiguous()

    tensors = {"features": half(encoded.features)}
    if encoded.ctc_logits is not None:
        tensors["ctc_logits"] = half(encoded.ctc_logits)
    if encoded.lower is not None:  # what a bridge's personal top trains on (engine/whisper.py)
        tensors["lower"] = half(encoded.lower)
    meta = {"format": ENCODED_FORMAT, "format_version": "1", "frame_rate_hz": repr(float(encoded.frame_rate_hz))}
    rel = encoded_relpath(utterance_id)
    write_private_file(data_dir, rel, save(tensors, metadata=meta))
    return rel, int(encoded.features.shape[0])


def load_encoded(path: Path | str) -> "EncoderOutput":
    """Read a cached encoder output back as float32 CPU tensors."""
    from safetensors import SafetensorError, safe_open

    from assistant.engine.encoder import EncoderOutput

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != ENCODED_FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {ENCODED_FORMAT!r}")
            features = f.get_tensor("features").float()
            logits = f.get_tensor("ctc_logits").float() if "ctc_logits" in f.keys() else None
            lower = f.get_tensor("lower").float() if "lower" in f.keys() else None
            rate = float(meta["frame_rate_hz"])
    except FileNotFoundError as exc:
        raise StoreError(f"the cached encoder output {path} is missing",
                         fix="process the utterance again to re-create it") from exc
    except (OSError, SafetensorError, KeyError, ValueError) as exc:
        raise StoreError(f"the cached encoder output {path} is unreadable: {exc}",
                         fix="delete it; processing the utterance again re-creates it") from exc
    return EncoderOutput(features=features, ctc_logits=logits, frame_rate_hz=rate, lower=lower)
