"""The corpora of the demo build: which voices say which sentences (all synthetic, all cached).

- train / dev: training espeak-ng voices x base train / dev sentences;
- test-seen: training voices x base test sentences (never in any training text);
- test-heldout: held-out espeak-ng voices x test sentences;
- flite, festival, sox: the "new user" voices the model never heard, x test sentences;
- regression: the first rows of test-heldout, shipped with the bundle as cached encoder outputs.
Personal names and places never appear in any of them (they are the user's, for personalization).
"""

from __future__ import annotations

import sys
from pathlib import Path

from assistant.synth import text as tx
from assistant.synth.corpus import default_cache_dir, generate, read_manifest
from assistant.synth.voices_sets import NEW_USER_EXAMPLES, heldout_voice_for, train_voice_for

FULL = {"train": 8000, "dev": 300, "test": 300, "regression": 150}
QUICK = {"train": 300, "dev": 30, "test": 30, "regression": 10}
NEW_USERS = {"flite": NEW_USER_EXAMPLES[0], "festival": NEW_USER_EXAMPLES[1], "sox": NEW_USER_EXAMPLES[2]}


def build(sizes: dict[str, int], *, seed: int = 0, work: str | None = None) -> dict[str, list[dict]]:
    base = tx.base_sentences(seed)
    work_dir = Path(work) if work else default_cache_dir().parent / "demo-build"
    test = base["test"][: sizes["test"]]
    plan = {
        "train": [(train_voice_for(u.id, seed), u) for u in base["train"][: sizes["train"]]],
        "dev": [(train_voice_for(u.id, seed), u) for u in base["dev"][: sizes["dev"]]],
        "test-seen": [(train_voice_for(u.id, seed), u) for u in test],
        "test-heldout": [(heldout_voice_for(u.id, seed), u) for u in test],
        **{name: [(spec, u) for u in test] for name, spec in NEW_USERS.items()},
    }
    sets = {}
    for name, items in plan.items():
        def report(done: int, total: int, name: str = name) -> None:
            print(f"  [corpus {name}] {done}/{total} clips", file=sys.stderr, flush=True)

        manifest = generate(items, work_dir / name, seed=seed, progress=report)
        sets[name] = read_manifest(manifest)
    sets["regression"] = sets["test-heldout"][: sizes["regression"]]
    return sets


def lm_pairs(seed: int = 0) -> list[tuple[str, str]]:
    """LLM text: every base train sentence with its reply (more text than the audio covers)."""
    return [(t, r) for t, r in tx.lm_training_text(seed)]
