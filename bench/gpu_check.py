"""The engine and personalization on a CUDA device: what the project's CPU machines cannot check.

    python -m bench.gpu_check --make-waves FILE.npz [--n 20]     # here, where espeak-ng is
    python -m bench.gpu_check --waves FILE.npz [--json FILE]     # on a machine with a CUDA GPU

1. The demo bundle on ``cuda`` (fp16, as ``half_ok`` picks for a GPU) against the same bundle on the
   CPU (fp32): transcripts of the same espeak-ng utterances (how many are identical, WER of each) and
   the per-stage time of a turn.
2. Random weights shaped like the preset (HuBERT-base + Qwen2.5-0.5B, built on the device): the
   per-stage time of a turn on ``cuda``, and one personalization job step per method on a batch of 16
   utterances of 4 s: seconds per step and the job's extra GPU memory (peak allocated during the steps
   less what the serving models hold) for the daemon's default (backprop through the LLM with the
   personal CTC head), the same with gradient checkpointing, and ``ctc`` (the head alone, no LLM).
   The Jetson shares its 8 GB between CPU and GPU: this extra memory is what a job adds to serving.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def make_waves(path: Path, n: int) -> None:
    from bench.latency import utterances

    utts = utterances(n)
    np.savez_compressed(path, refs=np.array([r for _, r in utts]),
                        **{f"w{i}": (np.clip(w, -1, 1) * 32767).astype(np.int16) for i, (w, _) in enumerate(utts)})


def load_waves(path: Path) -> list[tuple[np.ndarray, str]]:
    z = np.load(path)
    refs = [str(r) for r in z["refs"]]
    return [(z[f"w{i}"].astype(np.float32) / 32768.0, refs[i]) for i in range(len(refs))]


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def turn_times(engine, waves: list[np.ndarray], runs: int = 3) -> dict:
    engine.run(waves[0])  # warm-up (CUDA kernels, caches)
    rows = []
    for w in waves[:runs]:
        engine.reset_history()
        _sync()
        rows.append(engine.run(w).timings)
        _sync()
    return {k: round(statistics.median(getattr(t, k) for t in rows), 4)
            for k in ("encoder_s", "bridge_s", "transcript_s", "response_s")}


def demo_check(waves: list[tuple[np.ndarray, str]]) -> dict:
    from assistant.config import demo_bundle_dir
    from assistant.engine.engine import Engine
    from assistant.metrics import wer

    out = {}
    hyps = {}
    for dev in ("cpu", "cuda"):
        engine = Engine.from_bundle(demo_bundle_dir(), device=dev)
        hyps[dev] = [engine.run(w, respond=False).transcript for w, _ in waves]
        out[dev] = {"dtype": str(engine.llm.dtype) if hasattr(engine.llm, "dtype") else "",
                    "wer": round(wer([r for _, r in waves], hyps[dev]).rate, 4),
                    "turn": turn_times(engine, [w for w, _ in waves])}
    out["job"] = demo_job(engine, waves)  # the last engine: cuda
    out["identical_transcripts"] = sum(a == b for a, b in zip(hyps["cpu"], hyps["cuda"]))
    out["n"] = len(waves)
    out["differing"] = [(a, b) for a, b in zip(hyps["cpu"], hyps["cuda"]) if a != b][:5]
    return out


def demo_job(engine, waves: list[tuple[np.ndarray, str]], steps: int = 20) -> dict:
    """A personalization job's parts on the GPU as the daemon runs them: the bundle's replay and
    regression sets (soft CTC logits from the fp16 encoder head), a grown personal head, training with
    ``backprop`` and ``ctc`` (the default) with the ``[alignment]`` defaults but ``steps`` steps, the
    gate's WER of each candidate on CPU-cached features, and for ``ctc`` the rest of the daemon's path:
    the personal lexicon with word spotting, the voice-routed twin and ``gate.choose`` between them."""
    from assistant.alignment.data import Example, LabelledSet
    from assistant.alignment.gate import wer_of
    from assistant.alignment.personalize import bundle_set, personalize
    from assistant.config import AlignmentConfig

    regression, replay = bundle_set(engine, "regression"), bundle_set(engine, "replay")
    encoded = engine.encoder.encode_many([w for w, _ in waves])
    cpu = [type(e)(features=e.features.cpu(), ctc_logits=e.ctc_logits.cpu(), frame_rate_hz=e.frame_rate_hz)
           for e in encoded]  # the store's cache is read back on the CPU
    train = [Example(i, t, e, e.n_frames / e.frame_rate_hz) for i, (e, (_, t)) in enumerate(zip(cpu, waves))]
    # the gate scores the training utterances here: this checks the path on the GPU, not the quality
    data = LabelledSet(train=train, heldout=train, cached=len(train), reencoded=0)
    out = {"regression": len(regression), "replay": len(replay),
           "base_generic_wer": round(wer_of(engine, engine.bridge, regression).rate, 4)}
    cfg = AlignmentConfig(max_steps=steps, batch_size=8, min_heldout=2)
    for method in ("backprop", "ctc"):
        t0 = time.perf_counter()
        res = personalize(engine, data, cfg, method=method, seed=0, generic=regression, replay=replay,
                          gated=method == "ctc")
        _sync()
        cand = res.variants[0]
        out[method] = {"train_s": round(res.train_s, 3), "total_s": round(time.perf_counter() - t0, 3),
                       "generic_wer": round(wer_of(engine, cand, regression).rate, 4),
                       "user_wer": round(wer_of(engine, cand, train).rate, 4)}
    out["ctc_gate"] = {"candidates": len(res.variants), "kept": res.variants.index(res.candidate),
                       "accepted": res.accepted, "reason": res.reason, "seconds": round(res.gate_s, 2)}
    return out


def preset_check(root: Path, steps: int = 3) -> dict:
    import torch

    from assistant.alignment.trainers import TrainSettings, make_recipe
    from assistant.engine.engine import Engine
    from assistant.modelgen import build_bundle

    bundle = build_bundle(root / "preset", shape="preset")
    rng = np.random.default_rng(0)
    waves = [(rng.standard_normal(64000) * 0.05).astype(np.float32) for _ in range(16)]
    out: dict = {}
    for kind in ("conv", "ctc"):
        try:
            engine = Engine.from_bundle(bundle, device="cuda", bridge_kind=kind)
        except Exception as exc:  # noqa: BLE001 (reported, not fatal: the other kind still runs)
            out[f"turn_{kind}"] = f"error: {exc}"
            continue
        out[f"turn_{kind}"] = turn_times(engine, waves[:4])
    engine = Engine.from_bundle(bundle, device="cuda", bridge_kind="ctc")
    encoded = engine.encoder.encode_many(waves)

    class Ex:
        def __init__(self, e, t):
            self.encoded, self.text = e, t

    text = "please set a timer for ten minutes and turn on the kitchen lights"
    train = [Ex(e, text) for e in encoded]
    jobs = {"backprop + personal head": ("backprop", {}),
            "backprop, gradient checkpointing": ("backprop", {"gradient_checkpointing": True}),
            "ctc (the default: head alone, no LLM)": ("ctc", {})}
    for name, (method, options) in jobs.items():
        torch.cuda.empty_cache()
        _sync()
        serving = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        recipe = make_recipe(method, **options)
        recipe.setup(engine, engine.bridge, train, TrainSettings(max_steps=steps + 1, batch_size=16, seed=0,
                                                                 personal_head=True, adapter_dim=256,
                                                                 adapter_kernel=9, adapter_dropout=0.3,
                                                                 parent_lr_scale=0.1, anchor_weight=1e-2))
        times: list[float] = []
        last = [time.perf_counter()]

        def progress(p, times=times, last=last) -> None:
            _sync()
            now = time.perf_counter()
            times.append(now - last[0])
            last[0] = now

        recipe.train(should_pause=lambda: len(times) >= steps + 1, on_progress=progress)
        _sync()
        peak = torch.cuda.max_memory_allocated()
        recipe.cleanup()
        out[name] = {"step_s": round(statistics.median(times[1:]), 4),  # the first step warms up
                     "extra_gpu_mb": round((peak - serving) / 2**20, 1), "serving_gpu_mb": round(serving / 2**20, 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--make-waves", metavar="FILE")
    ap.add_argument("--waves", metavar="FILE")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.make_waves:
        make_waves(Path(args.make_waves), args.n)
        return 0
    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA device: this check runs on a machine with an NVIDIA GPU", file=sys.stderr)
        return 2
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    if args.waves:
        result["demo"] = demo_check(load_waves(Path(args.waves)))
        print(json.dumps({"demo": result["demo"]}, indent=1), flush=True)
    with tempfile.TemporaryDirectory() as d:
        result["preset_shaped"] = preset_check(Path(d))
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
