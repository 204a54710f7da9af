"""Build a bundle from scratch: synthetic speech -> encoder, LLM, bridges (no pretrained model at all).

    python -m bench.demo.build [--out DIR] [--seed 0] [--quick]

Seeded and reproducible on a 2-core CPU machine (stages run one after another: two trainings at
once slow each other ~4x). Progress goes to stderr; the manifest records the recipe, the corpus
sizes, the time of each stage and the WER on every test set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from bench.demo import assemble, augment, bridge_train, encoder_train, joint_weight, lm_train, reply_bonus  # noqa: E402
from bench.demo import corpora  # noqa: E402


def log(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


class Timer:
    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    def run(self, name: str, fn, *a, **kw):
        log(f"{name} ...")
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        self.stages[name] = round(time.perf_counter() - t0, 1)
        log(f"{name} done in {self.stages[name]:.0f} s")
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build the demo bundle from synthetic speech.")
    from assistant.config import default_data_dir

    ap.add_argument("--out", default=str(default_data_dir() / "bundles" / "demo-scratch"),
                    help="bundle directory (default: <data dir>/bundles/demo-scratch; the shipped bundle is "
                         "bench.real.build's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny corpus and few steps: checks the pipeline only")
    ap.add_argument("--work", default=None, help="corpus work dir (default: ~/.cache/assistant/demo-build)")
    ap.add_argument("--reuse", metavar="PARTS", default="",
                    help="comma list of encoder,llm: take them from the existing --out bundle instead of "
                         "training again (to iterate on later stages; recorded in the manifest)")
    ap.add_argument("--augment", type=int, default=None, metavar="N",
                    help="perturbed copies of the training audio for the encoder and bridges (bench/demo/augment.py; "
                         "default 0: the shipped bundle was built without)")
    ap.add_argument("--pad-s", type=float, default=0.5, metavar="S",
                    help="up to S seconds of room noise before and after each training clip, as the daemon's "
                         "VAD segments have (bench/demo/augment.room_padded; 0: the clips as espeak-ng made them)")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    timer = Timer()
    out = Path(args.out).resolve()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    reuse = {p for p in args.reuse.split(",") if p}
    if reuse - {"encoder", "llm"}:
        ap.error(f"--reuse takes encoder and/or llm, not {sorted(reuse - {'encoder', 'llm'})}")
    old_build = json.loads((out / "manifest.json").read_text())["build"] if reuse else {}
    for part in reuse:
        shutil.copytree(out / part, tmp / part)

    enc_r, lm_r, br_r = encoder_train.EncoderRecipe(seed=args.seed, pad_s=args.pad_s), \
        lm_train.LMRecipe(seed=args.seed), bridge_train.BridgeRecipe(seed=args.seed)
    sizes = corpora.QUICK if args.quick else corpora.FULL
    if args.quick:
        enc_r, lm_r, br_r = replace(enc_r, steps=60), replace(lm_r, steps=40), replace(br_r, steps=20)
    if args.augment is not None:
        enc_r = replace(enc_r, augment_copies=args.augment)

    sets = timer.run("corpus", corpora.build, sizes, seed=args.seed, work=args.work)
    train_rows, dev_rows = sets.pop("train"), sets.pop("dev")
    train_waves = timer.run("load audio", assemble.load_waves, train_rows)
    dev_waves = assemble.load_waves(dev_rows)

    if "encoder" in reuse:
        enc_r = encoder_train.EncoderRecipe(**{**old_build["recipes"]["encoder"],
                                               "augment_copies": old_build["recipes"]["encoder"].get(
                                                   "augment_copies", 0)})
    # The encoder and the bridges both learn from the clean set plus its perturbed copies: robust
    # features are what lets a new user's voice be learned later (bench/demo/augment.py).
    train_waves = train_waves + timer.run("augment", augment.augmented_copies, train_waves,
                                          enc_r.augment_copies, args.seed)
    # every clip (and copy) framed by a little room noise, as the daemon's VAD segments are
    train_waves = [augment.room_padded(w, args.seed, i, enc_r.pad_s) for i, w in enumerate(train_waves)]
    texts = [r["text"] for r in train_rows] * (1 + enc_r.augment_copies)
    if "encoder" in reuse:
        dev_cer = old_build.get("encoder_dev_cer", float("nan"))
    else:
        fe = encoder_train.feature_extractor()
        feats = timer.run("log-mel features", encoder_train.fbank, fe, train_waves)
        dev_feats = encoder_train.fbank(fe, dev_waves)
        model, vocab, dev_cer = timer.run("train encoder", encoder_train.train, enc_r, feats, texts, dev_feats,
                                          [r["text"] for r in dev_rows])
        log(f"encoder dev CER (greedy CTC) {dev_cer:.3f}")
        encoder_train.save(model.half(), vocab, tmp / "encoder")
        del feats, dev_feats

    from assistant.modelgen import char_tokenizer

    if "llm" in reuse:
        lm_r = lm_train.LMRecipe(**old_build["recipes"]["llm"])
    else:
        tok = char_tokenizer()
        lm = timer.run("train LLM", lm_train.train, lm_r, tok, corpora.lm_pairs(seed=args.seed))
        lm.half().save_pretrained(tmp / "llm")  # fp16 on disk keeps the bundle small; loading casts back
        tok.save_pretrained(tmp / "llm")

    from assistant.engine.bridge import init_label_table
    from assistant.engine.checkpoint import new_bridge, save_bridge
    from assistant.engine.encoder import SpeechEncoder
    from assistant.engine.engine import Engine
    from assistant.engine.llm import CausalLM

    enc_id, llm_id = assemble.ids(tmp)
    encoder = SpeechEncoder.load(tmp / "encoder", identity=enc_id, device="cpu")
    llm = CausalLM.load(tmp / "llm", assemble.DEMO_PROMPT, identity=llm_id, device="cpu")
    encoded = timer.run("encode training set", encoder.encode_many, train_waves)
    trained = {}
    for kind, hidden in (("conv", 256), ("ctc", 384)):
        ctc_tokens = encoder.ctc_tokenizer.convert_ids_to_tokens(list(range(len(encoder.ctc_tokenizer))))
        b = new_bridge(kind, encoder_dim=encoder.dim, llm_dim=llm.dim, encoder_id=enc_id, llm_id=llm_id,
                       hidden_dim=hidden, ctc_blank_id=encoder.blank_id, version=f"base-{kind}", seed=args.seed,
                       ctc_vocab=len(ctc_tokens))
        if kind == "ctc":  # start from reading the CTC labels as the LLM's own characters
            log(f"label table: {init_label_table(b.module, ctc_tokens, '|', llm)} of {len(ctc_tokens)} labels")
        timer.run(f"train {kind} bridge", bridge_train.train, br_r, b, llm, [e.features for e in encoded],
                  [e.ctc_logits for e in encoded], texts)
        save_bridge(b, tmp / "bridge" / kind, metrics={}, training={"recipe": asdict(br_r), "n": len(texts)})
        trained[kind] = b
    del encoded

    metrics: dict = {"encoder_dev_cer": round(dev_cer, 4)}
    dev_wer = {}
    for kind, b in trained.items():
        engine = Engine(encoder, b, llm, speculative=True)
        res = timer.run(f"evaluate {kind} on dev", assemble.evaluate, engine, dev_rows, dev_waves)
        dev_wer[kind] = res["wer"]
    default = min(dev_wer, key=dev_wer.get)
    metrics["dev_wer"] = dev_wer
    engine = Engine(encoder, trained[default], llm, speculative=True)
    if encoder.has_ctc:  # joint CTC/LLM decoding: its weight is chosen on dev, like the default bridge
        weight, metrics["dev_wer_joint"] = timer.run("joint CTC weight on dev", joint_weight.pick_weight, engine,
                                                     dev_rows, dev_waves)
    from assistant.synth import text as tx  # the reply bias: chosen on dev replies (text in, reply out)

    dev_pairs = [(u.text, u.reply) for u in tx.base_sentences(args.seed)["dev"][: reply_bonus.DEV_N]]
    bonus, metrics["reply_accuracy_dev"] = timer.run("reply copy bonus on dev", reply_bonus.pick_bonus, engine,
                                                     dev_pairs, log=log)
    for name, rows in sets.items():
        if name == "regression":
            continue
        res = timer.run(f"evaluate on {name}", assemble.evaluate, engine, rows)
        res.pop("hyps")
        metrics[name] = res
        log(f"{name}: WER {res['wer']:.3f} {res['wer_ci95']} CER {res['cer']:.3f} (n={res['n']})")
        if name in ("test-seen", "test-heldout"):  # the same clips as the daemon's VAD frames them
            waves = [augment.vad_framed(w, i) for i, w in enumerate(assemble.load_waves(rows))]
            res = timer.run(f"evaluate on {name}-vad", assemble.evaluate, engine, rows, waves)
            res.pop("hyps")
            metrics[f"{name}-vad"] = res
            log(f"{name}-vad: WER {res['wer']:.3f} {res['wer_ci95']} CER {res['cer']:.3f} (n={res['n']})")
    if "regression" in sets:
        rows = sets["regression"]
        timer.run("regression set", assemble.save_regression, tmp, engine, rows, assemble.load_waves(rows))
        replay = train_rows[-sizes["regression"]:]
        timer.run("replay set", assemble.save_regression, tmp, engine, replay, assemble.load_waves(replay), "replay")

    build = {"command": "python -m bench.demo.build" + (" --quick" if args.quick else "") +
             (f" --reuse {args.reuse}" if reuse else "") +
             (f" --augment {args.augment}" if args.augment is not None else "") +
             (f" --pad-s {args.pad_s}" if args.pad_s != 0.5 else ""), "seed": args.seed, "encoder_dev_cer": round(dev_cer, 4),
             "reused": {p: old_build.get("built_at") for p in sorted(reuse)},
             "recipes": {"encoder": asdict(enc_r), "llm": asdict(lm_r), "bridge": asdict(br_r)},
             "corpus": {k: len(v) for k, v in {"train": train_rows, "dev": dev_rows, **sets}.items()},
             "stage_seconds": timer.stages, "total_seconds": round(sum(timer.stages.values()), 1),
             "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}",
             "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for kind, b in trained.items():
        save_bridge(b, tmp / "bridge" / kind, metrics={"dev_wer": dev_wer[kind]},
                    training={"recipe": asdict(br_r), "n": len(texts)}, created_at=build["built_at"])
    assemble.write_manifest(tmp, enc_id=enc_id, llm_id=llm_id, bridges={k: f"bridge/{k}" for k in trained},
                            default=default, build=build, metrics=metrics, joint_ctc_weight=engine.ctc_weight,
                            response_copy_bonus=bonus)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log(f"demo bundle written to {out} in {build['total_seconds']:.0f} s")
    print(json.dumps({"metrics": metrics, "stage_seconds": timer.stages}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
