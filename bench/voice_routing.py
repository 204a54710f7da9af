"""Experiment: a personalized bridge used only for the enrolled voice.

    python -m bench.voice_routing --user SPEC

Trains the `ctc` method (bench/personalize.py) on the user's 100 enrollment utterances, then scores it
on the user's 300 test utterances and on the bundle's generic regression set three ways: as trained,
and routed per utterance (a) by CTC confidence (the encoder head's mean max log-probability against
the personal head's) and (b) by voice: the utterance's time-averaged encoder features nearer the
centroid of the user's training utterances than that of the bundle's replay set -> the personal head
and adapter, else the parent's path (encoder logits, no adapter). Not product code: both rules are
patched in here. The product's rule (`[alignment] voice_routing`, `trainers.base.routed_by_voice`) is
the voice rule with a threshold on the distance ratio set from the training data.
"""

from __future__ import annotations

import argparse
import sys
import types

import torch


def main(argv: list[str] | None = None) -> int:
    from assistant.alignment.personalize import bundle_set
    from assistant.audio import load_audio
    from assistant.config import demo_bundle_dir
    from assistant.engine.engine import Engine
    from assistant.metrics import wer
    from bench import personalize as P

    ap = argparse.ArgumentParser(prog="python -m bench.voice_routing", description=__doc__.splitlines()[0])
    ap.add_argument("--user", required=True)
    args = ap.parse_args(argv)
    engine = Engine.from_bundle(demo_bundle_dir(), device="cpu")
    generic, replay = bundle_set(engine, "regression"), bundle_set(engine, "replay")
    adapt_rows, test_rows = P.user_corpus(args.user, 100, 300, 0)

    def enc(rows):
        waves = [load_audio(r["audio"], max_duration_s=60).samples for r in rows]
        return [(e, len(w) / 16000, r) for e, w, r in zip(engine.encoder.encode_many(waves), waves, rows)]

    test, adapt = enc(test_rows), enc(adapt_rows)
    cand = P.METHODS["ctc"](engine, [(e, r["text"]) for e, _, r in adapt], 0)

    def score() -> tuple[float, float]:
        h = P.transcribe_encoded(engine, cand, [(e, d) for e, d, _ in test])
        g = P.transcribe_encoded(engine, cand, [(x.encoded, x.duration_s) for x in generic])
        return round(wer([r["text"] for _, _, r in test], h).rate, 4), round(wer([x.text for x in generic], g).rate, 4)

    def personal(self, features):
        f = self.adapter(features) if self.adapter is not None else features
        return f, self.head(f)

    conf = lambda logits: logits.float().log_softmax(-1).max(-1).values.mean()  # noqa: E731

    def by_confidence(self, features, ctc_logits):
        f, pl = personal(self, features)
        return (features, ctc_logits) if ctc_logits is not None and conf(ctc_logits) > conf(pl) else (f, pl)

    cu = torch.stack([e.features.float().mean(0) for e, _, _ in adapt]).mean(0)
    cg = torch.stack([x.encoded.features.float().mean(0) for x in replay]).mean(0)

    def by_voice(self, features, ctc_logits):
        v = features.float().mean(0)
        if ctc_logits is not None and (v - cu).norm() >= (v - cg).norm():
            return features, ctc_logits
        return personal(self, features)

    print(f"user {args.user}: (user WER, generic WER) on 300 user test / {len(generic)} generic utterances")
    print("  as trained  ", score(), flush=True)
    for name, fn in (("by confidence", by_confidence), ("by voice     ", by_voice)):
        cand.module.frames = types.MethodType(fn, cand.module)
        print(f"  {name}", score(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
