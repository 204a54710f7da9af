"""Corpora of synthetic speech: a shared clip cache plus one manifest.jsonl per corpus.

Each clip is stored once, at ``<cache>/<ab>/<key>.wav`` (16-bit, 16 kHz, mono), where ``key`` is
sha256(generator version, canonical spec, text, seed): corpora that share a (voice, sentence)
share the file, and a second run only writes manifests. Files are written to a temp name and
renamed, so an interrupted run never leaves a half WAV under a real key.

CLI::

    python -m assistant.synth.corpus --voice SPEC --split test --n 300 --out DIR [--seed S]
    python -m assistant.synth.corpus --base --out DIR [--train-n N] [--dev-n N] [--test-n N] [--heldout-n N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile as sf

from assistant.audio import Audio, to_wav_bytes
from assistant.errors import AssistantError
from assistant.synth import text as tx
from assistant.synth.voice_spec import SynthError, VoiceSpec, parse
from assistant.synth.voices import check_voice, synthesize
from assistant.units import TARGET_RATE_HZ
from assistant.synth.voices_sets import heldout_voice_for, train_voice_for

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1"  # bump when synthesis changes in a way that alters the audio
PROGRESS_EVERY = 500
SPLITS = ("train", "dev", "test", "adapt")
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str, "voice": str, "text": str, "reply": str, "audio": str, "duration_s": (int, float),
    "domain": str, "personal": bool, "split": str}

Item = tuple["VoiceSpec | str", tx.Utterance]
Progress = Callable[[int, int], None]


def default_cache_dir() -> Path:
    env = os.environ.get("ASSISTANT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "assistant" / "speech"


def cache_key(spec: VoiceSpec | str, text: str, seed: int) -> str:
    raw = f"{GENERATOR_VERSION}\x00{parse(spec)}\x00{text}\x00{seed}"
    return hashlib.sha256(raw.encode()).hexdigest()


def clip_path(key: str, cache: Path) -> Path:
    return cache / key[:2] / f"{key}.wav"


def _write_clip(spec: VoiceSpec, text: str, seed: int, path: Path) -> float:
    """Synthesize into the cache atomically; return the duration in seconds."""
    x = synthesize(spec, text, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(to_wav_bytes(Audio(np.clip(x, -1.0, 1.0))))
        os.replace(tmp, path)  # atomic on POSIX: readers see nothing or the whole file
    finally:
        tmp.unlink(missing_ok=True)
    return len(x) / TARGET_RATE_HZ


def _write_text_atomic(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(content, encoding="utf-8")
    os.replace(tmp, path)


def generate(items: Sequence[Item], out_dir: str | os.PathLike, *, seed: int = 0,
             workers: int | None = None, progress: Progress | None = None,
             split: str | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Synthesize (or reuse) every (voice, utterance) clip and write ``out_dir/manifest.jsonl``.

    ``split`` labels every row; by default each utterance's own split (``text.split_of``).
    Returns the manifest's path.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    specs = {s: check_voice(s) for s in {str(parse(v)) for v, _ in items}}  # fail before any work
    rows, todo = [], {}
    for v, utt in items:
        spec = specs[str(parse(v))]
        key = cache_key(spec, utt.text, seed)
        path = clip_path(key, cache)
        rows.append((spec, utt, key, path))
        if not path.exists():
            todo.setdefault(key, (spec, utt.text, path))
    durations: dict[str, float] = {}
    total, done = len(rows), len(rows) - len(todo)
    t0 = time.monotonic()
    if todo:
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            futures = {pool.submit(_write_clip, s, t, seed, p): k for k, (s, t, p) in todo.items()}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=1.0, return_when=FIRST_EXCEPTION)
                for f in finished:
                    if f.exception() is not None:
                        pool.shutdown(wait=True, cancel_futures=True)
                        raise f.exception()  # type: ignore[misc]
                    durations[futures[f]] = f.result()
                    done += 1
                    if progress is not None and (done % PROGRESS_EVERY == 0 or done == total):
                        progress(done, total)
    elif progress is not None:
        progress(done, total)
    log.info("%d clips (%d synthesized) in %.1f s", total, len(todo), time.monotonic() - t0)
    lines = []
    for spec, utt, key, path in rows:
        dur = durations.get(key)
        if dur is None:
            dur = sf.info(str(path)).frames / TARGET_RATE_HZ
        lines.append(json.dumps({
            "id": f"{utt.id}-{key[:8]}", "voice": str(spec), "text": utt.text, "reply": utt.reply,
            "audio": str(path.resolve()), "duration_s": round(dur, 4), "domain": utt.domain,
            "personal": utt.personal, "split": split or tx.split_of(utt)}, ensure_ascii=False))
    manifest = Path(out_dir) / "manifest.jsonl"
    _write_text_atomic(manifest, "".join(line + "\n" for line in lines))
    return manifest


def _manifest_error(path: Path, lineno: int, problem: str) -> SynthError:
    return SynthError(f"{path}:{lineno}: {problem}",
                      fix="regenerate the corpus with python -m assistant.synth.corpus")


def read_manifest(path: str | os.PathLike, *, check_audio: bool = True) -> list[dict]:
    """Read and validate a manifest.jsonl; every error names the file and line."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise SynthError(f"cannot read manifest {path}: {e.strerror}",
                         fix="check the path, or generate the corpus first") from None
    rows = []
    for lineno, line in enumerate(raw, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise _manifest_error(path, lineno, f"not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise _manifest_error(path, lineno, "not a JSON object")
        for key, typ in _FIELDS.items():
            if key not in row:
                raise _manifest_error(path, lineno, f"missing field {key!r}")
            if not isinstance(row[key], typ) or (typ is not bool and isinstance(row[key], bool)):
                raise _manifest_error(path, lineno, f"field {key!r} has the wrong type")
        if row["split"] not in SPLITS:
            raise _manifest_error(path, lineno, f"split {row['split']!r} is not one of {SPLITS}")
        if row["duration_s"] <= 0:
            raise _manifest_error(path, lineno, "duration_s must be positive")
        try:
            parse(row["voice"])
        except SynthError as e:
            raise _manifest_error(path, lineno, f"bad voice spec: {e.problem}") from None
        audio = Path(row["audio"])
        row["audio"] = str(audio if audio.is_absolute() else path.parent / audio)
        if check_audio and not Path(row["audio"]).is_file():
            raise _manifest_error(path, lineno, f"audio file {row['audio']} is missing")
        rows.append(row)
    return rows


def _pick(split: str, n: int, seed: int) -> list[tx.Utterance]:
    if split in ("adapt", "personal-test"):
        pool = tx.personal_sentences(seed, "adapt" if split == "adapt" else "test")
    else:
        pool = tx.base_sentences(seed)[split]
    if n > len(pool):
        raise SynthError(f"asked for {n} {split} sentences; the split has {len(pool)}",
                         fix=f"use --n {len(pool)} or less")
    return pool[:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m assistant.synth.corpus", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (gets manifest.jsonl)")
    ap.add_argument("--voice", help="voice spec for every clip (single-voice mode)")
    ap.add_argument("--split", default="test", choices=("train", "dev", "test", "adapt", "personal-test"))
    ap.add_argument("--n", type=int, default=300, help="sentences (single-voice mode)")
    ap.add_argument("--base", action="store_true", help="build train/dev/test-seen/test-heldout corpora")
    ap.add_argument("--train-n", type=int, default=6000)
    ap.add_argument("--dev-n", type=int, default=300)
    ap.add_argument("--test-n", type=int, default=500, help="test sentences x training voices")
    ap.add_argument("--heldout-n", type=int, default=500, help="test sentences x held-out voices")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--cache-dir", default=None, help="default: $ASSISTANT_CACHE_DIR or ~/.cache/assistant/speech")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)

    def report(done: int, total: int) -> None:
        print(f"  {done}/{total} clips ({time.monotonic() - t0:.1f} s)", flush=True)

    try:
        jobs: list[tuple[Path, list[Item]]] = []
        if args.base:
            s = args.seed
            jobs.append((out / "train", [(train_voice_for(u.id, s), u) for u in _pick("train", args.train_n, s)]))
            jobs.append((out / "dev", [(train_voice_for(u.id, s), u) for u in _pick("dev", args.dev_n, s)]))
            test = _pick("test", max(args.test_n, args.heldout_n), s)
            jobs.append((out / "test-seen", [(train_voice_for(u.id, s), u) for u in test[:args.test_n]]))
            jobs.append((out / "test-heldout", [(heldout_voice_for(u.id, s), u) for u in test[:args.heldout_n]]))
        elif args.voice:
            jobs.append((out, [(args.voice, u) for u in _pick(args.split, args.n, args.seed)]))
        else:
            ap.error("give --voice SPEC or --base")
        for where, items in jobs:
            if not items:
                continue
            t0 = time.monotonic()
            print(f"{where}: {len(items)} clips", flush=True)
            m = generate(items, where, seed=args.seed, workers=args.workers, progress=report,
                         cache_dir=args.cache_dir)
            dt = time.monotonic() - t0
            print(f"{m}: {len(items)} clips in {dt:.1f} s ({len(items) / max(dt, 1e-9):.1f} clips/s)")
    except AssistantError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
