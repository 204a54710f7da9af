"""Per-stage timings of one `respond` turn on a 5 s utterance, per bundle (engine issue's figures).

    python -m bench.turn_timings --bundle DIR [--bundle DIR ...] [--seconds 5] [--runs 3] [--json FILE]

The utterance is espeak-ng speech when espeak-ng is installed (padded with silence to the length),
otherwise low noise. Each bundle runs once to warm up, then ``--runs`` times; the table shows the
median per stage, with speculative (CTC draft) transcript decoding on and off.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

SENTENCE = "please set a timer for five minutes and then turn on the kitchen lights"


def utterance(seconds: float) -> tuple[np.ndarray, str]:
    from assistant.audio import load_audio

    n = int(seconds * 16000)
    if shutil.which("espeak-ng"):
        with tempfile.TemporaryDirectory() as d:
            wav = Path(d) / "u.wav"
            subprocess.run(["espeak-ng", "-w", str(wav), SENTENCE], check=True)
            x = load_audio(wav, max_duration_s=60).samples[:n]
            return np.pad(x, (0, n - len(x))), "espeak-ng speech"
    return (np.random.default_rng(0).standard_normal(n) * 0.05).astype(np.float32), "noise"


def measure(bundle: str, wave: np.ndarray, runs: int) -> list[dict]:
    import torch

    from assistant.engine.engine import Engine

    t0 = time.perf_counter()
    engine = Engine.from_bundle(bundle, device="cpu")
    load_s = time.perf_counter() - t0
    rows = []
    for spec in (True, False):
        engine.speculative = spec and engine.encoder.has_ctc
        engine.run(wave)  # warm-up
        turns = []
        for _ in range(runs):
            engine.reset_history()
            turns.append(engine.run(wave))
        med = {k: statistics.median(getattr(t.timings, k) for t in turns)
               for k in ("encoder_s", "bridge_s", "transcript_s", "response_s")}
        rows.append({"bundle": engine.bundle.manifest.name, "speculative": engine.speculative,
                     **med, "total_s": sum(med.values()), "transcript_passes": turns[-1].transcript_passes,
                     "draft_accepted": turns[-1].draft_accepted, "load_s": load_s,
                     "threads": torch.get_num_threads()})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", action="append", required=True)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    wave, kind = utterance(args.seconds)
    print(f"utterance: {args.seconds:.1f} s of {kind}; median of {args.runs} runs after one warm-up; CPU")
    rows = [r for b in args.bundle for r in measure(b, wave, args.runs)]
    head = f"{'bundle':<18}{'draft':>6}{'encoder':>9}{'bridge':>8}{'transcr.':>9}{'response':>9}{'total':>8}{'passes':>7}"
    print(head)
    for r in rows:
        print(f"{r['bundle']:<18}{'on' if r['speculative'] else 'off':>6}{r['encoder_s']:>9.3f}{r['bridge_s']:>8.3f}"
              f"{r['transcript_s']:>9.3f}{r['response_s']:>9.3f}{r['total_s']:>8.3f}{r['transcript_passes']:>7}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
