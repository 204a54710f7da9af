"""Alignment speed and memory: ours against the naive end-to-end way, on the same data, in one run.

    python -m bench.align_speed [--bundle DIR] [--preset-shaped] [--user SPEC] [--n 50] [--epochs 3]
                                [--micro-batch-size N] [--gradient-checkpointing] [--method M] [--top-rank R]
                                [--json FILE]

naive: every step re-encodes the audio (encoder forward), conv bridge, LLM in the loop, batch 1,
       for --epochs epochs over the user's N utterances. A bundle without a conv bridge (the shipped
       one serves a text-input ctc bridge) trains a new conv bridge that way: Tiny-Align's end-to-end
       projector, whose WER cannot reach the shipped bridge's in a few epochs (the ratio is then
       taken at the same number of epochs).
ours:  what the daemon's job runs: encoder outputs cached at inference time (not re-run), the
       [alignment] defaults (method, personal CTC head, replay, anchor, batch 16) on the bundle's
       default bridge, paused at checkpoints to measure the held-out WER (not timed).
The ratio naive_s / ours_s is taken at the same held-out WER (ours' first checkpoint at or below the
naive run's final WER) when the naive run improved on the base bridge, else at the same number of
epochs (and always so for random preset-shaped weights, where only speed and memory mean
something). Each run is its own subprocess, so peak RSS is its own. The JSON holds, per model set,
naive_s, ours_s, ratio, basis, base/naive/ours WER (on the user's held-out test sentences), ours'
WER curve and final WER, serving_rss_mb (the engine loaded), job_extra_rss_mb (the job's peak RSS over
its start: spoken replay set, setup and training, the held-out WER measurements left out; Linux resets
the peak around them, see PeakMeter) and after_job_rss_mb (RSS once the job cleaned up, minus serving:
what the daemon keeps).
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
    """The process's peak RSS since the last ``PeakMeter.fresh`` (Linux: VmHWM), else since it started."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakMeter:
    """The job's peak RSS over its start, counting only what the job runs: before each held-out WER
    measurement (which decodes with the LLM) the peak so far is read (``pause``), and after it the heap is
    given back, the peak reset (Linux /proc/self/clear_refs; elsewhere the peak since the process started)
    and what the measurement left in RSS set aside from later peaks (``resume``)."""

    def __init__(self) -> None:
        self.start = self.fresh()
        self.peak = self.start
        self.stages: dict[str, float] = {}  # the peak over the start seen at each stage's end
        self.residue = 0.0  # RSS the held-out measurements left behind
        self.paused_at = 0.0

    @staticmethod
    def fresh() -> float:
        from assistant.alignment.trainers.base import release_memory

        release_memory()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        return _rss_mb()

    def read(self, stage: str = "") -> None:
        now = _peak_mb() - self.residue
        self.peak = max(self.peak, now)
        if stage:
            self.stages[stage] = round(max(self.stages.get(stage, 0.0), now - self.start), 1)

    def pause(self, stage: str) -> None:
        self.read(stage)
        self.paused_at = _rss_mb()

    def resume(self) -> None:
        self.residue += max(0.0, self.fresh() - self.paused_at)

    @property
    def extra_mb(self) -> float:
        self.read()
        return max(0.0, self.peak - self.start)


def inner(mode: str, bundle: str, user: str, n: int, epochs: int, test_n: int, seed: int,
          target_wer: float | None = None, memory: dict | None = None) -> dict:
    import torch

    from assistant.audio import load_audio
    from assistant.engine.engine import Engine
    from assistant.metrics import wer
    from bench.personalize import user_corpus

    torch.manual_seed(seed)
    engine = Engine.from_bundle(bundle, device="cpu")
    serving = _rss_mb()
    adapt_rows, test_rows = user_corpus(user, n, test_n, seed)
    waves = [load_audio(r["audio"], max_duration_s=60).samples for r in adapt_rows]
    texts = [r["text"] for r in adapt_rows]
    test_waves = [load_audio(r["audio"], max_duration_s=60).samples for r in test_rows]
    test_enc = engine.encoder.encode_many(test_waves)
    refs = [r["text"] for r in test_rows]

    def held_out_wer(bridge) -> float | None:  # never timed; random weights: nothing to measure
        if engine.bundle.manifest.is_noise:
            return None
        hyps = [engine.transcribe_encoded(e, len(w) / 16000, bridge=bridge)[0] for e, w in zip(test_enc, test_waves)]
        return wer(refs, hyps).rate

    out: dict = {"serving_rss_mb": serving}
    if mode == "naive":
        out["base_wer"] = held_out_wer(engine.bridge)
        meter = PeakMeter()
        bridge, out["seconds"] = _naive(engine, waves, texts, epochs, seed)
        meter.read()
        out["wer"] = held_out_wer(bridge)
    else:
        encoded = engine.encoder.encode_many(waves)  # what the daemon cached at inference time: not the job's
        meter = PeakMeter()
        out.update(_ours(engine, encoded, texts, epochs, seed, held_out_wer, target_wer, memory or {}, meter))
        bridge = engine.bridge
    out["job_extra_rss_mb"] = meter.extra_mb
    out["job_stages_mb"] = meter.stages
    if "after_job_rss" in out:
        out["after_job_rss_mb"] = out.pop("after_job_rss") - serving
    out["bridge"] = bridge.kind
    return out


def _naive(engine, waves, texts, epochs: int, seed: int):
    import copy
    import random

    import torch

    from assistant.alignment.objective import target_ids, transcript_loss
    from assistant.engine.bridge import run_bridge
    from assistant.engine.engine import Engine

    if engine.bridge.kind == "conv":
        bridge = engine.bridge
    elif "conv" in engine.bundle.manifest.bridges:
        bridge = Engine.load_bridge_for(engine.bundle.bridge_dir("conv"), engine.encoder, engine.llm)
    else:
        from assistant.engine.checkpoint import new_bridge

        bridge = new_bridge("conv", encoder_dim=engine.encoder.dim, llm_dim=engine.llm.dim,
                            encoder_id=engine.encoder.identity, llm_id=engine.llm.identity, seed=seed)
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


def _ours(engine, encoded, texts, epochs: int, seed: int, held_out_wer, target_wer: float | None,
          memory: dict, meter: PeakMeter) -> dict:
    """The daemon's job: its [alignment] defaults (method, steps, batch, personal head, replay, anchor).

    Trained in one go, paused at checkpoints (steps 2, 4, 8, ... and the same number of epochs as the
    naive run) to measure the held-out WER; the clock counts setup and training only."""
    from dataclasses import dataclass

    from assistant.alignment.trainers import make_recipe, recipe_options, resolve_method, settings_for
    from assistant.alignment.trainers.base import release_memory
    from assistant.config import AlignmentConfig
    from assistant.alignment.personalize import bundle_set, wants_top
    from assistant.alignment.spoken import spoken_set

    c = AlignmentConfig(**memory)  # micro_batch_size / gradient_checkpointing from the command line

    @dataclass(frozen=True)
    class Ex:
        encoded: object
        text: str

    train = [Ex(e, t) for e, t in zip(encoded, texts)]
    method = resolve_method(c.method, bridge_kind=engine.bridge.kind, encoder_has_ctc=engine.encoder.ctc_head is not None,
                            personal_head=c.personal_head)
    top = wants_top(engine, c, method)  # a personal top replays the bundle's set spoken again (spoken.py)
    generic = (spoken_set(engine, "replay") if top else bundle_set(engine, "replay")) if c.replay_share > 0 else []
    if top:
        meter.read("spoken set")
    replay = [Ex(r.encoded, r.text) for r in generic]
    settings = settings_for(c, method, seed=seed, replay=replay, personal_top=top)
    same_epochs = max(1, -(-epochs * len(train) // c.batch_size))
    checkpoints = sorted({2 ** k for k in range(1, 12) if 2 ** k < settings.max_steps} | {same_epochs, settings.max_steps})
    if engine.bundle.manifest.is_noise:  # speed and memory only: the same epochs as the naive run
        checkpoints = [same_epochs]
    recipe = make_recipe(method, **recipe_options(method, c))
    t0 = time.perf_counter()
    recipe.setup(engine, engine.bridge, train, settings)
    setup_s = time.perf_counter() - t0
    state = {"step": 0, "seconds": 0.0}

    def progress(p) -> None:
        state["step"], state["seconds"] = p.step, p.seconds

    curve = []
    for stop in checkpoints:
        recipe.train(should_pause=lambda: state["step"] >= stop, on_progress=progress)
        meter.pause("training")
        curve.append({"step": state["step"], "seconds": round(setup_s + state["seconds"], 3),
                      "wer": held_out_wer(recipe.result())})
        meter.resume()
    recipe.cleanup()
    # what the daemon keeps once a job has ended: its data, replay set and recipe dropped, the freed heap
    # given back (trainers.base.release_memory, as the scheduler does)
    settings_json = {"method": method, "max_steps": settings.max_steps, "batch": c.batch_size,
                     "micro_batch": settings.micro_batch_size, "gradient_checkpointing": c.gradient_checkpointing,
                     "personal_head": c.personal_head, "personal_top": top, "top_rank": settings.top_rank,
                     "replay": len(replay)}
    del recipe, train, replay, generic, encoded, settings
    release_memory()
    after_job = _rss_mb()
    at_epochs = next(p for p in curve if p["step"] >= same_epochs)
    reached = next((p for p in curve if target_wer is not None and p["wer"] is not None and p["wer"] <= target_wer),
                   None)
    return {"curve": curve, "same_epochs": at_epochs, "after_job_rss": after_job, "to_target": reached, "final": curve[-1],
            "settings": settings_json}


def run_one(mode: str, bundle: Path, args, target_wer: float | None = None) -> dict:
    cmd = [sys.executable, "-m", "bench.align_speed", "--inner", mode, "--bundle", str(bundle), "--user", args.user,
           "--n", str(args.n), "--epochs", str(args.epochs), "--test-n", str(args.test_n), "--seed", str(args.seed)]
    if target_wer is not None:
        cmd += ["--target-wer", str(target_wer)]
    if args.micro_batch_size:
        cmd += ["--micro-batch-size", str(args.micro_batch_size)]
    if args.gradient_checkpointing:
        cmd += ["--gradient-checkpointing"]
    if mode == "ours":
        cmd += ["--method", args.method, "--top-rank", str(args.top_rank)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} on {bundle} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(naive: dict, ours: dict) -> dict:
    """The ratio at the same held-out WER when the naive run improved on the base bridge and ours
    reached its WER; otherwise at the same number of epochs (random weights: speed only)."""
    improved = naive.get("wer") is not None and naive["wer"] < naive["base_wer"]
    if improved and ours["to_target"] is not None:
        basis, point = "same held-out WER", ours["to_target"]
    else:
        basis, point = "same epochs", ours["same_epochs"]
    r = lambda x: None if x is None else round(x, 4)  # noqa: E731
    return {"naive_s": round(naive["seconds"], 2), "ours_s": round(point["seconds"], 2),
            "ratio": round(naive["seconds"] / max(point["seconds"], 1e-9), 1), "basis": basis,
            "base_wer": r(naive.get("base_wer")), "naive_wer": r(naive.get("wer")), "ours_wer": r(point["wer"]),
            "ours_steps": point["step"], "ours_final": ours["final"], "ours_same_epochs": ours["same_epochs"],
            "ours_curve": ours["curve"], "ours_settings": ours["settings"],
            "serving_rss_mb": round(ours["serving_rss_mb"], 1), "job_extra_rss_mb": round(ours["job_extra_rss_mb"], 1),
            "naive_extra_rss_mb": round(naive["job_extra_rss_mb"], 1), "ours_bridge": ours["bridge"],
            "after_job_rss_mb": round(ours["after_job_rss_mb"], 1), "ours_stages_mb": ours["job_stages_mb"]}


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
    ap.add_argument("--micro-batch-size", type=int, default=0, help="ours: [alignment] micro_batch_size")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="ours: [alignment] gradient_checkpointing")
    ap.add_argument("--method", default="default", help="ours: [alignment] method (default, ctc, backprop, ...)")
    ap.add_argument("--top-rank", type=int, default=0, help="ours: [alignment] top_rank (0: a full copy of the top)")
    ap.add_argument("--target-wer", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inner:
        memory = {"micro_batch_size": args.micro_batch_size, "gradient_checkpointing": args.gradient_checkpointing,
                  "method": args.method, "top_rank": args.top_rank}
        print(json.dumps(inner(args.inner, args.bundle[0], args.user, args.n, args.epochs, args.test_n, args.seed,
                               args.target_wer, memory)))
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
        naive = run_one("naive", b, args)
        ours = run_one("ours", b, args, target_wer=naive.get("wer"))
        name = json.loads((b / "manifest.json").read_text())["name"]
        results[name] = {**compare(naive, ours), "n": args.n, "epochs": args.epochs, "user": args.user}
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    print(f"{'model set':<16}{'naive s':>9}{'ours s':>9}{'ratio':>8}  {'basis':<18}{'base WER':>9}{'naive WER':>10}"
          f"{'ours WER':>9}{'ours final':>11}{'serving MB':>11}{'job +MB':>9}{'naive +MB':>10}{'kept +MB':>9}")
    for name, r in results.items():
        print(f"{name:<16}{r['naive_s']:>9.1f}{r['ours_s']:>9.1f}{r['ratio']:>8.1f}  {r['basis']:<18}"
              f"{fmt(r['base_wer']):>9}{fmt(r['naive_wer']):>10}{fmt(r['ours_wer']):>9}"
              f"{fmt(r['ours_final']['wer']):>11}{r['serving_rss_mb']:>11.0f}{r['job_extra_rss_mb']:>9.0f}"
              f"{r['naive_extra_rss_mb']:>10.0f}{r['after_job_rss_mb']:>9.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
