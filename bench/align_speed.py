"""Alignment speed and memory: ours against the naive end-to-end way, on the same data, in one run.

    python -m bench.align_speed [--bundle DIR] [--preset-shaped] [--user SPEC] [--n 50] [--epochs 3] [--json FILE]

naive: every step re-encodes the audio (encoder forward), conv bridge, LLM in the loop, batch 1.
ours:  encoder outputs cached at inference time (not re-run), the default method (alignment trainers)
       with the bundle's default bridge, batches of 16.
Both run the same number of epochs over the same N utterances of one synthetic "user"; each runs in
its own subprocess so peak RSS is its own. Reported per model set: naive_s, ours_s, ratio
(naive_s / ours_s), naive_wer, ours_wer (on the user's held-out test sentences; for the random
preset-shaped set only speed and memory mean something), serving_rss_mb (the engine loaded) and
job_extra_rss_mb (peak RSS during training minus serving).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

REPO = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def inner(mode: str, bundle: str, user: str, n: int, epochs: int, test_n: int, seed: int) -> dict:
    import torch

    from assistant.audio import load_audio
    from assistant.engine.engine import Engine
    from bench.personalize import user_corpus

    torch.manual_seed(seed)
    engine = Engine.from_bundle(bundle, device="cpu")
    serving = _rss_mb()
    adapt_rows, test_rows = user_corpus(user, n, test_n, seed)
    waves = [load_audio(r["audio"], max_duration_s=60).samples for r in adapt_rows]
    texts = [r["text"] for r in adapt_rows]
    test_waves = [load_audio(r["audio"], max_duration_s=60).samples for r in test_rows]
    test_enc = engine.encoder.encode_many(test_waves)
    peak_before = max(_peak_mb(), serving)
    if mode == "naive":
        bridge, seconds = _naive(engine, waves, texts, epochs, seed)
    else:
        bridge, seconds = _ours(engine, waves, texts, epochs, seed)
    extra = max(0.0, _peak_mb() - peak_before)
    from assistant.metrics import wer

    hyps = [engine.transcribe_encoded(e, len(w) / 16000, bridge=bridge)[0] for e, w in zip(test_enc, test_waves)]
    return {"seconds": seconds, "wer": wer([r["text"] for r in test_rows], hyps).rate, "serving_rss_mb": serving,
            "job_extra_rss_mb": extra, "bridge": bridge.kind, "steps": getattr(bridge, "_steps", None)}


def _naive(engine, waves, texts, epochs: int, seed: int):
    import copy
    import random

    import torch

    from assistant.alignment.objective import target_ids, transcript_loss
    from assistant.engine.bridge import run_bridge
    from assistant.engine.engine import Engine

    bridge = engine.bridge if engine.bridge.kind == "conv" else \
        Engine.load_bridge_for(engine.bundle.bridge_dir("conv"), engine.encoder, engine.llm)
    cand = copy.deepcopy(bridge)
    module = cand.module.train().requires_grad_(True)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    targets = [target_ids(engine.llm, t) for t in texts]
    order = list(range(len(waves)))
    rng = random.Random(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        rng.shuffle(order)
        for i in order:  # batch 1, audio re-encoded every step
            enc = engine.encoder.encode([waves[i]])[0]
            speech = run_bridge(module, [enc.features])
            loss = transcript_loss(engine.llm, speech, [targets[i]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    module.eval().requires_grad_(False)
    return cand, time.perf_counter() - t0


def _ours(engine, waves, texts, epochs: int, seed: int):
    from dataclasses import dataclass

    from assistant.alignment.trainers import TrainSettings, make_recipe

    encoded = engine.encoder.encode_many(waves)  # what the daemon cached at inference time: not timed

    @dataclass(frozen=True)
    class Ex:
        encoded: object
        text: str

    train = [Ex(e, t) for e, t in zip(encoded, texts)]
    batch = 16
    steps = max(1, epochs * len(train) // batch)
    recipe = make_recipe("default")
    t0 = time.perf_counter()
    recipe.setup(engine, engine.bridge, train, TrainSettings(max_steps=steps, batch_size=batch, learning_rate=1e-3,
                                                             seed=seed))
    recipe.train(should_pause=lambda: False, on_progress=lambda p: None)
    cand = recipe.result()
    seconds = time.perf_counter() - t0
    recipe.cleanup()
    return cand, seconds


def run_one(mode: str, bundle: Path, args) -> dict:
    cmd = [sys.executable, "-m", "bench.align_speed", "--inner", mode, "--bundle", str(bundle), "--user", args.user,
           "--n", str(args.n), "--epochs", str(args.epochs), "--test-n", str(args.test_n), "--seed", str(args.seed)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} on {bundle} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.align_speed", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", action="append", default=[])
    ap.add_argument("--preset-shaped", action="store_true")
    ap.add_argument("--user", default="espeak-ng:en-029+klatt,rate=150,pitch=50")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--test-n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    ap.add_argument("--inner", choices=["naive", "ours"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inner:
        print(json.dumps(inner(args.inner, args.bundle[0], args.user, args.n, args.epochs, args.test_n, args.seed)))
        return 0
    from assistant.config import demo_bundle_dir
    from assistant.modelgen import build_bundle

    bundles = [Path(b) for b in args.bundle] or [demo_bundle_dir()]
    if args.preset_shaped:
        cache = Path(os.environ.get("ASSISTANT_CACHE_DIR", Path.home() / ".cache" / "assistant")) / "preset-shaped"
        if not (cache / "manifest.json").is_file():
            build_bundle(cache, shape="preset")
        bundles.append(cache)
    results = {}
    for b in bundles:
        print(f"==> {b}: naive, then ours ({args.n} utterances x {args.epochs} epochs)", file=sys.stderr, flush=True)
        naive, ours = run_one("naive", b, args), run_one("ours", b, args)
        name = json.loads((b / "manifest.json").read_text())["name"]
        results[name] = {"naive_s": round(naive["seconds"], 2), "ours_s": round(ours["seconds"], 2),
                         "ratio": round(naive["seconds"] / max(ours["seconds"], 1e-9), 1),
                         "naive_wer": round(naive["wer"], 4), "ours_wer": round(ours["wer"], 4),
                         "serving_rss_mb": round(ours["serving_rss_mb"], 1),
                         "job_extra_rss_mb": round(ours["job_extra_rss_mb"], 1),
                         "naive_extra_rss_mb": round(naive["job_extra_rss_mb"], 1), "ours_bridge": ours["bridge"],
                         "n": args.n, "epochs": args.epochs, "user": args.user}
    print(f"{'model set':<16}{'naive s':>9}{'ours s':>9}{'ratio':>8}{'naive WER':>10}{'ours WER':>9}"
          f"{'serving MB':>11}{'job +MB':>9}{'naive +MB':>10}")
    for name, r in results.items():
        print(f"{name:<16}{r['naive_s']:>9.1f}{r['ours_s']:>9.1f}{r['ratio']:>8.1f}{r['naive_wer']:>10.3f}"
              f"{r['ours_wer']:>9.3f}{r['serving_rss_mb']:>11.0f}{r['job_extra_rss_mb']:>9.0f}"
              f"{r['naive_extra_rss_mb']:>10.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
