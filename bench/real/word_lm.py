"""The shipped bundle's word LM: counted from the base training text, its weight chosen on dev speech.

    python -m bench.real.word_lm [--bundle assistant/demo] [--n-dev 100] [--n-test 100]

Writes ``<bundle>/language_model.json`` (engine/wordlm.py) from the same sentences as the bundle's
vocabulary.txt (base train split, never a test sentence), then reads 100 dev utterances (training
voices, dev sentences) with the greedy reading and with beam search at each weight and word bonus of
GRID, and keeps the best in the manifest's prompt (lm_weight, lm_word_bonus); greedy stays when no
setting beats it. Then the build's test sets (the first 100 utterances of each, the same audio the
build scored, faster-whisper's figures beside) are read with the kept setting: their ``wer``, ``wer_ci95``
and ``cer`` in the manifest become this reading's, the earlier ones kept as ``before_word_lm``. The
manifest records the counts, the grid's dev WERs and the command.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

GRID = ((0.0, 0.0), (0.3, 0.5), (0.5, 1.0), (0.5, 2.0), (0.8, 1.0), (0.8, 2.0), (1.2, 2.0), (1.2, 3.0))
TEST_SETS = ("test-heldout", "flite", "festival", "sox")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.real.word_lm", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default="assistant/demo")
    ap.add_argument("--n-dev", type=int, default=100)
    ap.add_argument("--n-test", type=int, default=100, help="utterances per test set (0: skip the test sets)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from assistant.bundle import load_bundle, save_manifest
    from assistant.config import load_config
    from assistant.engine.engine import Engine
    from assistant.engine.wordlm import WordLM
    from assistant.synth import text as tx
    from bench.transcripts import clips, grid_rows

    root = Path(args.bundle).resolve()
    train = tx.base_sentences(args.seed)["train"]
    lm = WordLM.from_texts(u.text for u in train)
    lm.save(root)
    engine = Engine.from_bundle(root, device="cpu", data_dir=load_config(None).data_path)
    waves, refs = clips("dev", args.n_dev, args.seed)
    encoded = engine.encoder.encode_many(waves)
    rows = grid_rows(engine, encoded, waves, refs, list(GRID))
    for r in rows:
        print(f"lm_weight {r['lm_weight']} bonus {r['word_bonus']}: dev WER {r['wer']:.4f} ({r['ms_per_utt']} ms)")
    best = min(rows, key=lambda r: (r["wer"], r["lm_weight"]))
    m = load_bundle(root).manifest
    prompt = dataclasses.replace(m.prompt, lm_weight=best["lm_weight"], lm_word_bonus=best["word_bonus"])
    build = {**m.build, "word_lm": {
        "command": "python -m bench.real.word_lm", "text": f"base train split, seed {args.seed}",
        "sentences": len(train), "ngrams": len(lm.counts), "discount": lm.discount,
        "unknown_share": lm.unknown_share,
        "dev_wer": {f"{r['lm_weight']}:{r['word_bonus']}": r["wer"] for r in rows}, "n_dev": len(refs)}}
    engine.llm.prompt = prompt
    metrics = dict(m.metrics)
    for name in TEST_SETS if args.n_test else ():
        waves, refs = clips(name, args.n_test, args.seed)
        r = grid_rows(engine, engine.encoder.encode_many(waves), waves, refs,
                      [(prompt.lm_weight, prompt.lm_word_bonus)])[0]
        old = metrics.get(name, {})
        metrics[name] = {**old, "wer": r["wer"], "wer_ci95": r["wer_ci95"], "cer": r["cer"], "n": len(refs),
                         "before_word_lm": old.get("before_word_lm")  # a rerun keeps the greedy figures
                         or {k: old[k] for k in ("wer", "wer_ci95", "cer") if k in old}}
        print(f"{name}: WER {r['wer']:.4f} {r['wer_ci95']} (before {old.get('wer')}; "
              f"faster-whisper {old.get('peer_wer')})", flush=True)
    save_manifest(root, dataclasses.replace(m, prompt=prompt, build=build, metrics=metrics))
    print(f"kept lm_weight {best['lm_weight']}, word bonus {best['word_bonus']} (dev WER {best['wer']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
