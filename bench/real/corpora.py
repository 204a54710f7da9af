"""The corpora of the real-models build: many training voices, and the new users held out of all of it.

Training (train, dev): espeak-ng's training speakers (7 accents x 20 variants, rate and pitch drawn per
utterance) and flite ``awb`` and ``rms`` at drawn rates; ``build`` perturbs a share of them (speed,
pitch, band limits, reverb, noise: bench/demo/augment.py) and frames every clip with room noise as the
VAD does. Held out of all training, and the test sets: espeak-ng's held-out speakers (accent en-029,
the klatt variants), flite ``slt``, festival ``kal_diphone`` and the sox-warped channel
(``NEW_USER_EXAMPLES``). Personal names and places never occur (they are the users').
"""

from __future__ import annotations

import sys
from pathlib import Path

from assistant.synth import text as tx
from assistant.synth.corpus import default_cache_dir, generate, read_manifest
from assistant.synth.voice_spec import VoiceSpec, parse
from assistant.synth.voices_sets import NEW_USER_EXAMPLES, _draw, heldout_voice_for, train_voice_for

FLITE_TRAIN = ("awb", "rms")
FLITE_SHARE = 5  # one training utterance in this many is flite's
FLITE_RATE = (80, 130)
NEW_USERS = {"flite": NEW_USER_EXAMPLES[0], "festival": NEW_USER_EXAMPLES[1], "sox": NEW_USER_EXAMPLES[2]}
TEST_SETS = ("test-heldout", "flite", "festival", "sox")
HELD_OUT = frozenset({"slt", "kal", "kal16", "kal_diphone"})  # never a training voice (checked)


def training_voice(utterance_id: str, seed: int) -> VoiceSpec:
    """espeak-ng's training speakers, and one utterance in FLITE_SHARE spoken by flite awb or rms."""
    if _draw("engine", utterance_id, seed) % FLITE_SHARE == 0:
        voice = FLITE_TRAIN[_draw("flite", utterance_id, seed) % len(FLITE_TRAIN)]
        rate = FLITE_RATE[0] + _draw("frate", utterance_id, seed) % (FLITE_RATE[1] - FLITE_RATE[0] + 1)
        return parse(f"flite:{voice},rate={rate}")
    return train_voice_for(utterance_id, seed)


def build(sizes: dict[str, int], *, seed: int = 0, work: str | None = None) -> dict[str, list[dict]]:
    base = tx.base_sentences(seed)
    work_dir = Path(work) if work else default_cache_dir().parent / "real-build"
    test = base["test"][: sizes["test"]]
    plan = {
        "train": [(training_voice(u.id, seed), u) for u in base["train"][: sizes["train"]]],
        "dev": [(training_voice(u.id, seed), u) for u in base["dev"][: sizes["dev"]]],
        "test-heldout": [(heldout_voice_for(u.id, seed), u) for u in test],
        **{name: [(spec, u) for u in test] for name, spec in NEW_USERS.items()},
    }
    for name in ("train", "dev"):
        leaked = {s.voice for s, _ in plan[name]} & HELD_OUT
        if leaked:
            raise RuntimeError(f"held-out voices {sorted(leaked)} in the {name} set")
    sets = {}
    for name, items in plan.items():
        def report(done: int, total: int, name: str = name) -> None:
            print(f"  [corpus {name}] {done}/{total} clips", file=sys.stderr, flush=True)

        sets[name] = read_manifest(generate(items, work_dir / name, seed=seed, progress=report))
    return sets
