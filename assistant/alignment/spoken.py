"""Generic speech for a job that trains a personal top: the bundle's regression and replay sets, spoken again.

A bundle ships those sets as our CTC module's output (regression.py): all that a personal head and the
gate need. A personal top (engine/whisper.py ``EncoderTop``) reads the Whisper states below that
output, 2.7 times wider, which would not fit the bundle's size budget. So the job speaks the sets'
sentences again, each with the voice it was made with (espeak-ng, which the daemon speaks its replies
with; flite and sox where installed), and encodes them: the active bridge and the candidate are then
compared on the same audio. About 300 sentences, 30 s on a 2-core CPU.
"""

from __future__ import annotations

import json
import logging
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

import torch

from assistant.alignment.regression import RegressionItem
from assistant.engine.encoder import EncoderOutput
from assistant.units import TARGET_RATE_HZ

if TYPE_CHECKING:
    from assistant.engine.engine import Engine

log = logging.getLogger(__name__)


def spoken_set(engine: "Engine", name: str, *, models: AbstractContextManager | None = None,
               batch: int = 4, limit: int | None = None) -> list[RegressionItem]:
    """The bundle's set ``name`` (``regression`` or ``replay``) spoken by its voices and encoded by the
    engine's encoder (with the lower states); sentences whose voice is not installed are left out (a
    warning says how many). ``models`` (the daemon's model lock) is held per encoder batch; ``limit``:
    the set's first sentences only. Small batches, each one's freed heap given back: the encoder's
    transient for a batch of 16 reached +180-280 MB and its heap grew to +390 MB over the set's 10
    batches; in batches of 4 given back, +120 MB, in the same time (bench/RESULTS.md)."""
    from assistant.alignment.trainers.base import release_memory
    from assistant.synth import SynthError
    from assistant.synth.voices import synthesize

    bundle = engine.bundle
    path = None if bundle is None else bundle.root / name / "utterances.json"
    if path is None or not path.is_file():
        return []
    rows = json.loads(path.read_text(encoding="utf-8"))["utterances"][:limit]
    lock = models if models is not None else nullcontext()
    items, missing = [], {}
    for s in range(0, len(rows), batch):  # a batch at a time: the job holds no audio
        waves, kept = [], []
        for row in rows[s:s + batch]:
            try:
                waves.append(synthesize(row["voice"], row["text"], seed=0))
                kept.append(row)
            except SynthError as exc:
                missing.setdefault(row["voice"].split(":", 1)[0], str(exc))
        with lock:
            outs = engine.encoder.encode(waves) if waves else []
        for e, r, w in zip(outs, kept, waves):
            # copies, not views of the padded batch (which they would keep whole), and ordinary tensors that
            # training takes as they are; lower states in float16: 300 sentences' are 50 MB
            e = EncoderOutput(e.features.to("cpu", copy=True),
                              None if e.ctc_logits is None else e.ctc_logits.to("cpu", copy=True),
                              e.frame_rate_hz, None if e.lower is None else e.lower.to("cpu", torch.float16, copy=True))
            items.append(RegressionItem(encoded=e, text=r["text"], id=r["id"], duration_s=len(w) / TARGET_RATE_HZ))
        del outs
        release_memory()
    if missing:
        log.warning("%s set: %d of %d sentences left out (%s)", name, len(rows) - len(items), len(rows),
                    "; ".join(missing.values()))
    return items
