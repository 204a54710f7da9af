"""Choose the demo bundle's ``prompt.response_copy_bonus``: reply accuracy on the dev sentences.

    python -m bench.demo.reply_bonus [--bundle assistant/demo] [--n 60] [--write]

The demo build runs the same choice (``pick_bonus``) after the joint CTC weight.

For each bonus in the grid, the LLM answers the dev split's reference transcripts (text in, reply out:
no audio, so only the reply decoding is measured) and the share of replies equal to the template's
reply (case and punctuation kept) is reported, with the same on the test split for the chosen bonus.
``--write`` stores the best dev bonus in the manifest (smallest bonus among ties).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

GRID = (0.0, 0.5, 1.0, 2.0)
DEV_N = 60  # dev sentences: the build runs this (bench/demo/build.py), so it stays short


def reply_accuracy(engine, pairs: list[tuple[str, str]], bonus: float) -> float:
    engine.llm.prompt = dataclasses.replace(engine.llm.prompt, response_copy_bonus=bonus)
    hits = 0
    for text, reply in pairs:
        engine.reset_history()
        got, _ = engine.respond_text(text)
        hits += got.strip() == reply.strip()
    return hits / max(len(pairs), 1)


def pick_bonus(engine, dev: list[tuple[str, str]], log=print) -> tuple[float, dict]:
    scores = {}
    for b in GRID:
        scores[str(b)] = round(reply_accuracy(engine, dev, b), 4)
        log(f"reply copy bonus {b}: dev reply accuracy {scores[str(b)]:.3f}")
    best = max(GRID, key=lambda b: (scores[str(b)], -b))
    engine.llm.prompt = dataclasses.replace(engine.llm.prompt, response_copy_bonus=best)
    return best, scores


def main(argv: list[str] | None = None) -> int:
    from assistant.config import demo_bundle_dir
    from assistant.engine.engine import Engine
    from assistant.synth import text as tx

    ap = argparse.ArgumentParser(prog="python -m bench.demo.reply_bonus", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=str(demo_bundle_dir()))
    ap.add_argument("--n", type=int, default=DEV_N)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    engine = Engine.from_bundle(args.bundle, device="cpu")
    splits = tx.base_sentences(args.seed)
    dev = [(u.text, u.reply) for u in splits["dev"][: args.n]]
    test = [(u.text, u.reply) for u in splits["test"][: args.n]]
    best, scores = pick_bonus(engine, dev, log=lambda m: print(m, file=sys.stderr, flush=True))
    test_acc = {"0.0": round(reply_accuracy(engine, test, 0.0), 4), str(best): round(reply_accuracy(engine, test, best), 4)}
    out = {"dev": scores, "chosen": best, "test": test_acc, "n": args.n, "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(out, indent=2))
    if args.write:
        from assistant.bundle import load_bundle, save_manifest

        m = load_bundle(args.bundle).manifest
        record = {"command": "python -m bench.demo.reply_bonus --write", **out,
                  "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        save_manifest(Path(args.bundle), dataclasses.replace(
            m, prompt=dataclasses.replace(m.prompt, response_copy_bonus=best),
            metrics={**m.metrics, "reply_accuracy": {"dev": scores, "test": test_acc}},
            build={**m.build, "reply_bonus": record}))
        print(f"wrote prompt.response_copy_bonus = {best} to {Path(args.bundle) / 'manifest.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
