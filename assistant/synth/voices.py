"""Run a voice spec: engine -> temp WAV -> sox chain -> 16 kHz mono float32 (+ seeded noise).

Every engine writes a WAV into a private temp dir; sox then applies the spec's effects and
ends at 16 kHz mono (espeak-ng writes 22050 Hz, flite's kal 8 kHz); without effects the
resampling is done in-process by soxr. Noise is added in numpy with a
generator seeded from (spec, text, seed), so a spec + text + seed always gives the same samples.
The engines and sox are deterministic (sox runs with -R, "repeatable" mode).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from assistant.synth.voice_spec import SynthError, VoiceSpec, parse
from assistant.units import TARGET_RATE_HZ

log = logging.getLogger(__name__)

__all__ = ["SynthError", "VoiceSpec", "parse", "check_engine", "check_voice", "engine_voices",
           "synthesize"]

_TIMEOUT_S = 60
_BINARIES = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave", "sox": "sox"}
_INSTALL = {
    "espeak-ng": "apt-get install espeak-ng",
    "flite": "apt-get install flite",
    "festival": "apt-get install festival festvox-kallpc16k",
    "sox": "apt-get install sox",
}
# flite's awb_time is a limited-domain voice: it can only say clock times and garbles anything else.
_FLITE_REFUSED = {"awb_time": "it is a limited-domain voice that only says clock times"}


def _which(tool: str) -> str:
    path = shutil.which(_BINARIES[tool])
    if path is None:
        raise SynthError(f"{_BINARIES[tool]} is not installed (needed for {tool})",
                         fix=f"install it: sudo {_INSTALL[tool]}")
    return path


def check_engine(engine: str) -> None:
    """Raise SynthError with an install hint when the binary is missing ("sox" is accepted too).

    Not cached: a look-up on PATH is cheap, and an install (or a test) may change the answer.
    """
    if engine not in _BINARIES:
        raise SynthError(f"unknown engine {engine!r}", fix="use one of: espeak-ng, flite, festival")
    _which(engine)


def _run(cmd: list[str], *, what: str, stdin: str | None = None) -> str:
    try:
        p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT_S,
                           check=False)
    except FileNotFoundError:
        raise SynthError(f"{cmd[0]} is not installed (needed for {what})",
                         fix="install the engine's package, e.g. sudo apt-get install festival") from None
    except subprocess.TimeoutExpired:
        raise SynthError(f"{what} took over {_TIMEOUT_S} s", fix="use a shorter text") from None
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        raise SynthError(f"{what} failed (exit {p.returncode}): {' | '.join(tail)}",
                         fix="check the voice spec and that the engine works from a shell")
    return p.stdout


@functools.lru_cache(maxsize=None)
def engine_voices(engine: str) -> tuple[frozenset[str], frozenset[str]]:
    """(voices, variants) installed for an engine; cached, since each lookup runs a subprocess."""
    check_engine(engine)
    if engine == "espeak-ng":
        out = _run([_which(engine), "--voices"], what="espeak-ng --voices")
        voices: set[str] = set()
        for line in out.splitlines()[1:]:
            cols = line.split()
            # Columns: Pty Language Age/Gender VoiceName File [Other langs]. MBROLA voices (mb/...)
            # need the absent mbrola package and fail at run time, so they are not offered.
            if len(cols) >= 5 and not cols[4].startswith("mb/") and cols[1] != "variant":
                voices.add(cols[1])
                voices.update(re.findall(r"\((\S+) \d+\)", line))  # aliases such as "en"
        out = _run([_which(engine), "--voices=variant"], what="espeak-ng --voices=variant")
        # The name after '+' is the variant's file name (!v/m3), case-sensitive; a few have
        # spaces ("Mr serious") and cannot be written in a spec.
        variants = set(re.findall(r"!v/(\S+)\s*(?:\(|$)", out, flags=re.M))
        return frozenset(voices), frozenset(variants)
    if engine == "flite":
        out = _run([_which(engine), "-lv"], what="flite -lv")
        names = out.split(":", 1)[-1].split()
        return frozenset(n for n in names if n not in _FLITE_REFUSED), frozenset()
    out = _run([shutil.which("festival") or "festival", "-b", "(print (voice.list))"], what="festival voice list")
    names = re.sub(r"[()]", " ", out).split()
    return frozenset(names), frozenset()


def check_voice(spec: VoiceSpec | str) -> VoiceSpec:
    """Raise SynthError when the engine, the voice or the espeak-ng variant is not installed.

    Needed because the engines do not fail on unknown voices: espeak-ng and flite fall back to
    their default voice and festival writes nothing, all with exit status 0.
    """
    spec = parse(spec)
    check_engine(spec.engine)
    if spec.sox_effects:
        check_engine("sox")
    voices, variants = engine_voices(spec.engine)
    if spec.engine == "flite" and spec.voice in _FLITE_REFUSED:
        raise SynthError(f"flite voice {spec.voice} is refused: {_FLITE_REFUSED[spec.voice]}",
                         fix=f"use one of: {', '.join(sorted(voices))}")
    if spec.voice not in voices:
        hint = ", ".join(sorted(v for v in voices if v.startswith("en"))) or ", ".join(sorted(voices))
        extra = "; more festival voices: apt-get install festvox-us-slt-hts" \
            if spec.engine == "festival" else ""
        raise SynthError(f"{spec.engine} has no voice {spec.voice!r}",
                         fix=f"installed {'English ' if spec.engine == 'espeak-ng' else ''}"
                             f"voices: {hint}{extra}")
    if spec.variant is not None and spec.variant not in variants:
        raise SynthError(f"espeak-ng has no variant {spec.variant!r} (names are case-sensitive)",
                         fix="see `espeak-ng --voices=variant` (File column after !v/), "
                             "e.g. m1..m8, f1..f5, klatt..klatt6")
    return spec


def _engine_cmd(spec: VoiceSpec, txt: Path, wav: Path) -> list[str]:
    exe = _which(spec.engine)
    if spec.engine == "espeak-ng":
        cmd = [exe, "-v", spec.voice + (f"+{spec.variant}" if spec.variant else "")]
        if spec.rate is not None:
            cmd += ["-s", str(spec.rate)]
        if spec.pitch is not None:
            cmd += ["-p", str(spec.pitch)]
        return cmd + ["-f", str(txt), "-w", str(wav)]
    stretch = None if spec.rate is None else f"{100.0 / spec.rate:.4f}"
    if spec.engine == "flite":
        cmd = [exe, "-voice", spec.voice, "-f", str(txt), "-o", str(wav)]
        return cmd + (["--setf", f"duration_stretch={stretch}"] if stretch else [])
    cmd = [exe, str(txt), "-o", str(wav), "-eval", f"(voice_{spec.voice})"]
    return cmd + (["-eval", f"(Parameter.set 'Duration_Stretch {stretch})"] if stretch else [])


def noise_seed(spec: VoiceSpec | str, text: str, seed: int) -> int:
    digest = hashlib.sha256(f"{parse(spec)}\x00{text}\x00{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise at ``snr_db`` relative to the clip's mean power (pauses included)."""
    power = float(np.mean(x.astype(np.float64) ** 2))
    sigma = np.sqrt(power / 10.0 ** (snr_db / 10.0))
    return (x + rng.standard_normal(len(x)) * sigma).astype(np.float32)


def synthesize(spec: VoiceSpec | str, text: str, *, seed: int = 0) -> np.ndarray:
    """Speak ``text`` with ``spec``: 16 kHz mono float32, identical for the same spec/text/seed."""
    spec = check_voice(spec)
    if not text.strip():
        raise SynthError("nothing to say: the text is empty", fix="pass a non-empty sentence")
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        d = Path(tmp)
        txt, raw, out = d / "in.txt", d / "engine.wav", d / "out.wav"
        txt.write_text(text.strip() + "\n", encoding="utf-8")
        _run(_engine_cmd(spec, txt, raw), what=f"{spec.engine} ({spec})")
        if not raw.exists() or raw.stat().st_size <= 44:
            raise SynthError(f"{spec.engine} produced no audio for {text[:60]!r} with {spec}",
                             fix="check that the voice works: run the engine by hand")
        if spec.sox_effects:
            # Float output: effects like gain/overdrive may exceed full scale, and float skips
            # sox's (random) dither; -R keeps anything random in sox repeatable anyway.
            _run([_which("sox"), "-R", "-V1", str(raw), "-r", str(TARGET_RATE_HZ), "-c", "1",
                  "-e", "floating-point", "-b", "32", str(out), *spec.sox_effects],
                 what=f"sox {' '.join(spec.sox_effects)}")
            x, rate = sf.read(out, dtype="float32", always_2d=True)
        else:
            # No effects: resample in-process (soxr, the same resampler as sox's `rate`): one
            # process fewer per clip (~8 ms serial; the espeak-ng start-up itself is ~16 ms).
            x, rate = sf.read(raw, dtype="float32", always_2d=True)
    x = x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]
    if rate != TARGET_RATE_HZ:
        x = soxr.resample(x, rate, TARGET_RATE_HZ, quality="HQ").astype(np.float32)
    if len(x) == 0 or not np.any(x):
        raise SynthError(f"{spec} produced silence for {text[:60]!r}",
                         fix="check the text has words the engine can say and the effects")
    if spec.noise_snr_db is not None:
        x = add_noise(x, spec.noise_snr_db, np.random.default_rng(noise_seed(spec, text, seed)))
    peak = float(np.max(np.abs(x)))
    if peak > 0.99:  # stored as 16-bit: scale down rather than clip
        x = (x * (0.99 / peak)).astype(np.float32)
    log.debug("synthesized %.2f s with %s", len(x) / TARGET_RATE_HZ, spec)
    return np.ascontiguousarray(x, dtype=np.float32)
