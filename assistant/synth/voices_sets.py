"""Voice sets: who speaks the training data, who is held out, and example "new users".

- TRAIN_VOICES: 7 espeak-ng accents x 20 variants (140 speakers). Rate (130..190 wpm) and pitch
  (30..70) are drawn per utterance, deterministically, by ``train_voice_for``.
- HELDOUT_VOICES: espeak-ng speakers whose accent (en-029) or variant (klatt*, m8) never occurs in
  training, each with a fixed rate and pitch: the same engine, unseen voices.
- NEW_USER_EXAMPLES: other engines and a warped channel (flite, festival, telephone-band espeak
  with noise): what a real new user's voice looks like to a model trained on espeak only.

Names were checked against ``espeak-ng --voices`` / ``--voices=variant`` of espeak-ng 1.51
(``check_voice_sets`` re-checks on the machine at hand).
"""

from __future__ import annotations

import hashlib

from assistant.synth.voice_spec import VoiceSpec, parse

TRAIN_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
                 "en-gb-x-gbcwmd", "en-us-nyc")
# m1..m7 and f1..f5 plus human-sounding named variants; the robotic/whisper/croak ones are left
# out of training (they would teach the model noise, not speakers).
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                  "edward", "john", "linda", "steph", "robert", "paul", "Annie", "Andrea")
TRAIN_RATE = (130, 190)
TRAIN_PITCH = (30, 70)

TRAIN_VOICES: tuple[VoiceSpec, ...] = tuple(
    VoiceSpec("espeak-ng", accent, variant) for accent in TRAIN_ACCENTS for variant in TRAIN_VARIANTS)

HELDOUT_VOICES: tuple[VoiceSpec, ...] = tuple(parse(s) for s in (
    "espeak-ng:en-029+m3,rate=160,pitch=45",
    "espeak-ng:en-029+f2,rate=150,pitch=60",
    "espeak-ng:en-029+klatt,rate=170,pitch=50",
    "espeak-ng:en-us+klatt2,rate=155,pitch=40",
    "espeak-ng:en-gb+klatt3,rate=165,pitch=55",
    "espeak-ng:en-gb-scotland+klatt4,rate=145,pitch=35",
    "espeak-ng:en-us-nyc+klatt5,rate=175,pitch=45",
    "espeak-ng:en-gb-x-rp+m8,rate=150,pitch=65",
))

NEW_USER_EXAMPLES: tuple[VoiceSpec, ...] = tuple(parse(s) for s in (
    "flite:slt",
    "festival:kal_diphone",
    "espeak-ng:en-us+klatt2|sox:pitch -400 highpass 300 lowpass 3400 reverb 30|noise:15",
))


def _draw(*parts: object) -> int:
    """A stable 64-bit number from the parts (Python's hash() is salted per process)."""
    key = "\x00".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little")


def train_voice_for(utterance_id: str, seed: int = 0) -> VoiceSpec:
    """The training speaker for one utterance: voice, rate and pitch drawn from (id, seed)."""
    base = TRAIN_VOICES[_draw("voice", utterance_id, seed) % len(TRAIN_VOICES)]
    rate = TRAIN_RATE[0] + _draw("rate", utterance_id, seed) % (TRAIN_RATE[1] - TRAIN_RATE[0] + 1)
    pitch = TRAIN_PITCH[0] + _draw("pitch", utterance_id, seed) % (TRAIN_PITCH[1] - TRAIN_PITCH[0] + 1)
    return base.with_params(rate=rate, pitch=pitch)


def heldout_voice_for(utterance_id: str, seed: int = 0) -> VoiceSpec:
    """A held-out speaker for one utterance (for mixed held-out test sets)."""
    return HELDOUT_VOICES[_draw("heldout", utterance_id, seed) % len(HELDOUT_VOICES)]


def check_voice_sets() -> None:
    """Raise SynthError if any voice of the sets is not installed here."""
    from assistant.synth.voices import check_voice

    for spec in (*TRAIN_VOICES, *HELDOUT_VOICES, *NEW_USER_EXAMPLES):
        check_voice(spec)
