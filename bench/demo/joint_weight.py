"""Stage (and command): pick the demo bundle's joint CTC/LLM decoding weight on the dev set.

    python -m bench.demo.joint_weight [--bundle assistant/demo] [--grid 0,0.2,0.3,0.4,0.5,0.6] [--write]

The weight (``prompt.joint_ctc_weight``, engine/joint.py) is chosen on dev (training voices x dev
sentences: never a test sentence), then every test set is evaluated with it. ``--write`` stores the
weight, the new test figures and this command in the bundle's manifest (the bundle's files are
otherwise untouched: the weight is a decoding setting, not a model).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

GRID = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6)


def log(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def pick_weight(engine, rows: Sequence[dict], waves, grid: Sequence[float] = GRID) -> tuple[float, dict[str, float]]:
    """The grid weight with the lowest dev WER (ties: the smaller weight); encodes the dev set once."""
    from assistant.metrics import wer

    encoded = engine.encoder.encode_many(list(waves))
    refs = [r["text"] for r in rows]
    table = {}
    for w in grid:
        engine.ctc_weight = w
        hyps = [engine.transcribe_encoded(e, len(x) / 16000)[0] for e, x in zip(encoded, waves)]
        table[str(w)] = round(wer(refs, hyps).rate, 4)
        log(f"joint CTC weight {w}: dev WER {table[str(w)]:.3f}")
    best = min(grid, key=lambda w: (table[str(w)], w))
    engine.ctc_weight = best
    return best, table


def main(argv: list[str] | None = None) -> int:
    from bench.demo import assemble, corpora

    ap = argparse.ArgumentParser(prog="python -m bench.demo.joint_weight", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=str(Path(__file__).resolve().parents[2] / "assistant" / "demo"))
    ap.add_argument("--grid", default=",".join(str(g) for g in GRID))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="store the weight and the figures in the manifest")
    args = ap.parse_args(argv)
    import torch

    from assistant.bundle import load_bundle, save_manifest
    from assistant.engine.engine import Engine

    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    bundle_dir = Path(args.bundle)
    engine = Engine.from_bundle(bundle_dir, device="cpu")
    sets = corpora.build(corpora.FULL, seed=args.seed)
    dev = sets["dev"]
    best, table = pick_weight(engine, dev, assemble.load_waves(dev), [float(g) for g in args.grid.split(",")])
    log(f"chosen weight {best}")
    metrics = {}
    for name in ("test-seen", "test-heldout", "flite", "festival", "sox"):
        res = assemble.evaluate(engine, sets[name])
        res.pop("hyps")
        metrics[name] = res
        log(f"{name}: WER {res['wer']:.3f} {res['wer_ci95']} CER {res['cer']:.3f}")
    record = {"command": "python -m bench.demo.joint_weight --write", "dev_wer": table, "chosen": best,
              "seconds": round(time.perf_counter() - t0, 1),
              "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(json.dumps({"joint_weight": record, "metrics": metrics}, indent=2))
    if args.write:
        m = load_bundle(bundle_dir).manifest
        prompt = dataclasses.replace(m.prompt, joint_ctc_weight=best)
        new_metrics = {**m.metrics, **metrics, "dev_wer_joint": table}
        save_manifest(bundle_dir, dataclasses.replace(m, prompt=prompt, metrics=new_metrics,
                                                      build={**m.build, "joint_weight": record}))
        log(f"wrote prompt.joint_ctc_weight = {best} and the test figures to {bundle_dir / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
