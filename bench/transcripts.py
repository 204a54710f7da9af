"""Transcript accuracy of the CTC reading: greedy vs beam search with the bundle's word LM, and the peer.

    python -m bench.transcripts [--bundle DIR] [--n 100] [--sets dev,test-heldout,flite,festival,sox]
        [--grid 0.3:1,0.5:1,...] [--peer]

Each set is the build's (bench/real/corpora.py): ``dev`` = training voices on dev sentences (where the
LM weight is chosen), the others = held-out voices on base test sentences; VAD-framed like the daemon's
segments. Each clip is encoded once; every decoding reads the same encoder output. Rows: WER with its
95 % interval, CER, ms per utterance for the reading. ``--peer``: faster-whisper on the same audio.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def clips(name: str, n: int, seed: int):
    """(waves, texts) of the first ``n`` utterances of set ``name``, VAD-framed."""
    from assistant.synth import text as tx
    from assistant.synth.voices import synthesize
    from assistant.synth.voices_sets import heldout_voice_for
    from bench.demo.augment import vad_framed
    from bench.real.corpora import NEW_USERS, training_voice

    base = tx.base_sentences(seed)
    utts = base["dev" if name == "dev" else "test"][:n]
    voice = {"dev": lambda u: training_voice(u.id, seed), "test-heldout": lambda u: heldout_voice_for(u.id, seed)}
    pick = voice.get(name) or (lambda u: NEW_USERS[name])
    return [vad_framed(synthesize(pick(u), u.text, seed=seed), i) for i, u in enumerate(utts)], [u.text for u in utts]


def decode_all(engine, encoded, waves, *, lm_weight: float, word_bonus: float) -> tuple[list[str], float]:
    """Transcripts of ``encoded`` with the reading's LM settings; and seconds per utterance."""
    base = engine.llm.prompt
    engine.llm.prompt = dataclasses.replace(base, lm_weight=lm_weight, lm_word_bonus=word_bonus)
    try:
        t0 = time.perf_counter()
        hyps = [engine.transcribe_encoded(e, len(w) / 16000)[0] for e, w in zip(encoded, waves)]
        return hyps, (time.perf_counter() - t0) / max(len(waves), 1)
    finally:
        engine.llm.prompt = base


def grid_rows(engine, encoded, waves, refs, grid: list[tuple[float, float]]) -> list[dict]:
    from assistant.metrics import cer, wer

    rows = []
    for weight, bonus in grid:
        hyps, sec = decode_all(engine, encoded, waves, lm_weight=weight, word_bonus=bonus)
        w = wer(refs, hyps)
        rows.append({"lm_weight": weight, "word_bonus": bonus, "wer": round(w.rate, 4),
                     "wer_ci95": [round(x, 4) for x in w.ci95], "cer": round(cer(refs, hyps).rate, 4),
                     "ms_per_utt": round(1000 * sec, 1), "hyps": hyps})
    return rows


def parse_grid(text: str) -> list[tuple[float, float]]:
    try:
        return [(float(a), float(b)) for a, b in (item.split(":") for item in text.split(","))]
    except ValueError:
        raise SystemExit(f"--grid {text!r}: expected WEIGHT:BONUS pairs separated by commas, e.g. 0:0,0.5:1")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.transcripts", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None, help="bundle directory (default: the configured one)")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", default="dev,test-heldout,flite,festival,sox")
    ap.add_argument("--grid", default=None, help="WEIGHT:BONUS pairs (default: greedy and the bundle's own)")
    ap.add_argument("--peer", action="store_true", help="also faster-whisper on the same audio")
    args = ap.parse_args(argv)
    from assistant.config import load_config
    from assistant.engine.engine import Engine
    from bench.peer import peer_row, whisper_source_of

    cfg = load_config(None)
    path = args.bundle or cfg.bundle_path()
    engine = Engine.from_bundle(path, device="cpu", data_dir=cfg.data_path)
    p = engine.llm.prompt
    grid = parse_grid(args.grid) if args.grid else [(0.0, 0.0), (p.lm_weight, p.lm_word_bonus)]
    if engine.word_lm is None:
        grid = [(0.0, 0.0)]
        print(f"{path} has no word LM (language_model.json): greedy reading only", file=sys.stderr)
    print("| set | reading | WER [95 % CI] | CER | ms per utt |\n|---|---|---|---|---|")
    for name in args.sets.split(","):
        waves, refs = clips(name, args.n, args.seed)
        encoded = engine.encoder.encode_many(waves)
        for r in grid_rows(engine, encoded, waves, refs, grid):
            what = "greedy" if r["lm_weight"] == 0 else f"beam + LM {r['lm_weight']} / bonus {r['word_bonus']}"
            print(f"| {name} | {what} | {r['wer']:.3f} [{r['wer_ci95'][0]:.3f}, {r['wer_ci95'][1]:.3f}] | "
                  f"{r['cer']:.3f} | {r['ms_per_utt']} |", flush=True)
        if args.peer and (source := whisper_source_of(path)):
            r = peer_row(source, cfg.data_path, waves, refs)
            print(f"| {name} | faster-whisper {source} | {r['wer']:.3f} [{r['wer_ci95'][0]:.3f}, "
                  f"{r['wer_ci95'][1]:.3f}] | {r['cer']:.3f} | {1000 * r['seconds_per_utt']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
