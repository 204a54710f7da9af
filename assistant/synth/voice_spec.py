"""Voice specs: one string names a synthetic speaker reproducibly.

    ENGINE:VOICE[+VARIANT][,rate=N][,pitch=N][|sox:EFFECTS][|noise:SNR_DB]

    espeak-ng:en-gb-scotland+m3,rate=160,pitch=40
    flite:slt|sox:highpass 300 lowpass 3400
    espeak-ng:en-us+klatt2|sox:pitch -400 highpass 300 lowpass 3400 reverb 30|noise:15

What ``rate`` and ``pitch`` mean per engine:

- espeak-ng: ``rate`` is words per minute (80..450, espeak's default 175), ``pitch`` is espeak's
  0..99 base pitch (default 50). ``+VARIANT`` is a file name from ``espeak-ng --voices=variant``.
- flite, festival: ``rate`` is the speaking rate in percent of the voice's normal rate (50..200;
  150 = 1.5x faster), applied as a duration stretch of 100/rate. They have no pitch knob that
  works for every voice, so ``pitch`` is refused: use ``|sox:pitch CENTS`` instead. No variants.

Parsing checks only the syntax and ranges (no binary is run); whether the voice is installed is
``voices.check_voice``'s job.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from assistant.errors import AssistantError

ENGINES = ("espeak-ng", "flite", "festival")
ESPEAK_RATE = (80, 450)
ESPEAK_PITCH = (0, 99)
STRETCH_RATE = (50, 200)  # flite/festival: percent of normal speed
SNR_RANGE_DB = (-10.0, 80.0)

# Effects that only shape the sound. Excluded on purpose: anything that changes the channel
# count or the rate (we always end at 16 kHz mono), writes files, or trims/pads (``trim``, ``pad``,
# ``silence``) - the clip must keep what the engine said.
SOX_EFFECTS = frozenset({
    "allpass", "band", "bandpass", "bandreject", "bass", "chorus", "compand", "contrast",
    "echo", "echos", "equalizer", "flanger", "gain", "highpass", "lowpass", "norm",
    "overdrive", "phaser", "pitch", "reverb", "speed", "tempo", "treble", "tremolo", "vol",
})
# An effect argument: a number with an optional unit suffix (300, 0.5q, 1k, -3dB, 30%),
# or a short flag (gain -n, tempo -s). Subprocesses get argument lists, never a shell,
# so this is about clear errors and reproducibility, not injection.
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[a-zA-Z%]{1,3})?"
_SOX_ARG = re.compile(rf"^(?:{_NUM}(?:[,:]{_NUM})*|-[a-zA-Z])$")  # compand takes 6:-70,-60,-20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]*$")
_SPEC_HELP = "ENGINE:VOICE[+VARIANT][,rate=N][,pitch=N][|sox:EFFECTS][|noise:SNR_DB]"


class SynthError(AssistantError):
    """A voice spec is malformed, an engine or voice is missing, or synthesis failed."""


def _bad(problem: str, fix: str) -> SynthError:
    return SynthError(problem, fix=fix)


@dataclass(frozen=True)
class VoiceSpec:
    engine: str
    voice: str
    variant: str | None = None
    rate: int | None = None
    pitch: int | None = None
    sox_effects: tuple[str, ...] = ()
    noise_snr_db: float | None = None

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def parse(cls, text: str | VoiceSpec) -> VoiceSpec:
        return parse(text)

    def __str__(self) -> str:
        s = f"{self.engine}:{self.voice}"
        if self.variant:
            s += f"+{self.variant}"
        if self.rate is not None:
            s += f",rate={self.rate}"
        if self.pitch is not None:
            s += f",pitch={self.pitch}"
        if self.sox_effects:
            s += "|sox:" + " ".join(self.sox_effects)
        if self.noise_snr_db is not None:
            s += f"|noise:{_fmt_float(self.noise_snr_db)}"
        return s

    def with_params(self, *, rate: int | None = None, pitch: int | None = None) -> VoiceSpec:
        return VoiceSpec(self.engine, self.voice, self.variant, rate, pitch, self.sox_effects,
                         self.noise_snr_db)


def _fmt_float(x: float) -> str:
    """Short when exact (15, 7.5), full precision otherwise, so parse(str(spec)) == spec."""
    short = f"{x:g}"
    return short if float(short) == x else repr(x)


def _check_range(key: str, value: int, lo_hi: tuple[int, int], engine: str, meaning: str) -> None:
    lo, hi = lo_hi
    if not lo <= value <= hi:
        raise _bad(f"{key}={value} is out of range for {engine}",
                   f"use {key}={lo}..{hi} ({meaning})")


def _validate(s: VoiceSpec) -> None:
    """Field checks shared by parse() and direct construction."""
    if s.engine not in ENGINES:
        raise _bad(f"unknown engine {s.engine!r} in voice spec",
                   f"use one of: {', '.join(ENGINES)}")
    if not s.voice or not _NAME.match(s.voice):
        raise _bad(f"missing or malformed voice {s.voice!r} for engine {s.engine}",
                   f"write {s.engine}:VOICE, e.g. " + _EXAMPLES[s.engine])
    if s.variant is not None:
        if s.engine != "espeak-ng":
            raise _bad(f"variant +{s.variant} given for {s.engine}",
                       "only espeak-ng voices take +VARIANT")
        if not _NAME.match(s.variant):
            raise _bad(f"malformed espeak-ng variant {s.variant!r}",
                       "use a name from `espeak-ng --voices=variant`, e.g. +m3, +f2, +klatt2")
    if s.engine == "espeak-ng":
        if s.rate is not None:
            _check_range("rate", s.rate, ESPEAK_RATE, s.engine, "words per minute")
        if s.pitch is not None:
            _check_range("pitch", s.pitch, ESPEAK_PITCH, s.engine, "espeak base pitch")
    else:
        if s.rate is not None:
            _check_range("rate", s.rate, STRETCH_RATE, s.engine, "percent of normal speed")
        if s.pitch is not None:
            raise _bad(f"pitch={s.pitch} is not supported by {s.engine}",
                       "drop pitch= and add a sox stage instead, e.g. |sox:pitch 300 (cents)")
    _validate_sox(s.sox_effects)
    if s.noise_snr_db is not None:
        lo, hi = SNR_RANGE_DB
        if not (math.isfinite(s.noise_snr_db) and lo <= s.noise_snr_db <= hi):
            raise _bad(f"noise SNR {s.noise_snr_db} dB is out of range",
                       f"use |noise:N with N from {lo:g} to {hi:g} dB")


_EXAMPLES = {"espeak-ng": "espeak-ng:en-us+m3", "flite": "flite:slt",
             "festival": "festival:kal_diphone"}


def _validate_sox(tokens: tuple[str, ...]) -> None:
    allowed = ", ".join(sorted(SOX_EFFECTS))
    if tokens and tokens[0] not in SOX_EFFECTS:
        raise _bad(f"sox effect {tokens[0]!r} is not allowed", f"allowed effects: {allowed}")
    for tok in tokens:
        if tok in SOX_EFFECTS:
            continue
        if tok.isalpha():  # a word that is not an allowed effect name
            raise _bad(f"sox effect {tok!r} is not allowed", f"allowed effects: {allowed}")
        if not _SOX_ARG.match(tok):
            raise _bad(f"sox argument {tok!r} is malformed",
                       "effect arguments are numbers with an optional unit (300, 0.5q, -3, 30%)")


def _parse_int(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _bad(f"{key}={value!r} is not an integer", f"write {key}=N, e.g. {key}=160") from None


def parse(text: str | VoiceSpec) -> VoiceSpec:
    """Parse a voice spec string; every error names the bad part and what is allowed."""
    if isinstance(text, VoiceSpec):
        return text
    text = text.strip()
    stages = [p.strip() for p in text.split("|")]
    head, extras = stages[0], stages[1:]
    engine, sep, rest = head.partition(":")
    engine = engine.strip()
    if not sep:
        raise _bad(f"voice spec {text!r} has no ENGINE:VOICE part", f"write {_SPEC_HELP}")
    if engine not in ENGINES:
        raise _bad(f"unknown engine {engine!r} in voice spec {text!r}",
                   f"use one of: {', '.join(ENGINES)}")
    voice_part, *params = [p.strip() for p in rest.split(",")]
    voice, plus, variant = voice_part.partition("+")
    if not voice:
        raise _bad(f"missing voice in {text!r}", f"write {engine}:VOICE, e.g. {_EXAMPLES[engine]}")
    if plus and not variant:
        raise _bad(f"empty variant after '+' in {text!r}", "write VOICE+VARIANT, e.g. en-us+m3")
    values: dict[str, int] = {}
    for p in params:
        key, eq, value = p.partition("=")
        key = key.strip()
        if key not in ("rate", "pitch") or not eq:
            raise _bad(f"bad voice parameter {p!r} in {text!r}",
                       "only rate=N and pitch=N are allowed after the voice")
        if key in values:
            raise _bad(f"{key}= given twice in {text!r}", f"give {key}= once")
        values[key] = _parse_int(key, value.strip())
    sox: tuple[str, ...] = ()
    snr: float | None = None
    seen: set[str] = set()
    for stage in extras:
        kind, colon, arg = stage.partition(":")
        kind = kind.strip()
        if kind not in ("sox", "noise") or not colon:
            raise _bad(f"unknown stage {stage!r} in {text!r}",
                       "stages after the voice are |sox:EFFECTS and |noise:SNR_DB")
        if kind in seen:
            raise _bad(f"|{kind}: given twice in {text!r}", f"give |{kind}: once")
        seen.add(kind)
        if kind == "sox":
            sox = tuple(arg.split())
            if not sox:
                raise _bad(f"empty sox stage in {text!r}", "write |sox:EFFECT ARGS..., "
                           "e.g. |sox:highpass 300 lowpass 3400")
        else:
            try:
                snr = float(arg)
            except ValueError:
                raise _bad(f"noise SNR {arg.strip()!r} is not a number",
                           "write |noise:SNR_DB, e.g. |noise:15") from None
            if snr == 0:
                snr = 0.0  # -0 and 0 must print alike
    return VoiceSpec(engine, voice.strip(), variant.strip() or None, values.get("rate"),
                     values.get("pitch"), sox, snr)
