"""Build the bundle on real pretrained models: a frozen Whisper encoder, our CTC module and bridge, a
frozen pretrained LLM.

    python -m bench.real.build [--whisper whisper-base] [--out assistant/demo]
                               [--seed 0] [--quick] [--work DIR] [--data-dir DIR]

Seeded, one command, on a 2-core CPU. Stages: the corpus (many voices, the new users held out,
corpora.py), Whisper frames of every clip (cached, frames.py), the CTC module (ctc_train.py), the
bridge into the LLM (bridge stage), the LLM's reply adapter (reply_adapter.py), then the bundle
directory with only what this project trained
(the pretrained weights come from their packages on first use: assistant/pretrained/). The manifest
records the recipe, the time of each stage and every figure.
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

from bench.demo import assemble as demo_assemble, augment  # noqa: E402
from bench.demo.build import Timer, log  # noqa: E402
from bench.real import assemble as real_assemble, corpora, ctc_train, frames, reply_adapter  # noqa: E402

FULL = {"train": 4000, "dev": 300, "test": 300, "weight_dev": 100, "eval": 100, "regression": 150}
QUICK = {"train": 120, "dev": 20, "test": 20, "weight_dev": 10, "eval": 10, "regression": 10}
# transcript decodings tried on dev: (who writes it, joint CTC weight, vocabulary tolerance, word LM weight
# and word bonus of the CTC reading's beam search: 0 = the greedy reading)
TRANSCRIPT_GRID = (("llm", 0.3, 0.0, 0.0, 0.0), ("ctc", 0.0, 0.0, 0.0, 0.0), ("ctc", 0.0, 5.0, 0.0, 0.0),
                   ("ctc", 0.0, 10.0, 0.0, 0.0), ("ctc", 0.0, 20.0, 0.0, 0.0), ("ctc", 0.0, 20.0, 0.3, 0.5),
                   ("ctc", 0.0, 20.0, 0.5, 1.0), ("ctc", 0.0, 20.0, 0.5, 2.0), ("ctc", 0.0, 20.0, 0.8, 3.0))
DEFAULT_WHISPER = "whisper-base"
LLM_SOURCE = "smollm2-135m-instruct"
DESCRIPTION = ("pretrained {whisper} encoder (frozen) with a CTC module trained on synthetic voices, and the "
               "pretrained SmolLM2-135M-Instruct (frozen) writing transcripts and replies")
AUG_SHARE = 2  # one training clip in this many also gets a perturbed copy (augment.augment)


def training_waves(rows, seed: int) -> tuple[list[str], list, list[str]]:
    """Ids, waves and texts of the training audio: every clip framed by room noise as the VAD frames
    it, and one in AUG_SHARE again, perturbed (speed, pitch, band limits, reverb, noise)."""
    waves = demo_assemble.load_waves(rows)
    ids = [r["id"] for r in rows]
    texts = [r["text"] for r in rows]
    aug_idx = [i for i in range(len(rows)) if i % AUG_SHARE == 0]
    waves += [augment.augment(waves[i], seed, i) for i in aug_idx]
    ids += [f"{ids[i]}-aug" for i in aug_idx]
    texts += [texts[i] for i in aug_idx]
    waves = [augment.room_padded(w, seed, i, 0.5) for i, w in enumerate(waves)]
    return ids, waves, texts


def pick_transcript(engine, rows, waves, grid=TRANSCRIPT_GRID) -> tuple[tuple, dict[str, float]]:
    """The decoding with the lowest dev WER (ties: the earlier in the grid); the engine keeps it."""
    import dataclasses

    from assistant.metrics import wer

    encoded = engine.encoder.encode_many(list(waves))
    refs = [r["text"] for r in rows]
    table, base = {}, engine.llm.prompt
    def use(source, weight, tol, lm_weight, lm_bonus) -> None:
        engine.llm.prompt = dataclasses.replace(base, transcript_source=source, vocabulary_tolerance=tol,
                                                joint_ctc_weight=weight, lm_weight=lm_weight, lm_word_bonus=lm_bonus)
        engine.ctc_weight = weight

    def key(g) -> str:
        return f"{g[0]} w={g[1]} tol={g[2]}" + (f" lm={g[3]}:{g[4]}" if g[3] else "")

    for g in grid:
        use(*g)
        engine._correctors = {}
        hyps = [engine.transcribe_encoded(e, len(x) / 16000)[0] for e, x in zip(encoded, waves)]
        table[key(g)] = round(wer(refs, hyps).rate, 4)
        log(f"dev WER {table[key(g)]:.3f}: {key(g)}")
    best = min(grid, key=lambda g: table[key(g)])
    use(*best)
    engine._correctors = {}
    return best, table


def cached_ctc(work: Path, source: str, r, feats, texts, dev_feats, dev_texts):
    """The CTC module for (source, recipe, training texts), from the work dir or trained now."""
    import hashlib

    from safetensors.torch import load_file, save_file

    from assistant.engine.whisper import CtcModule

    key = hashlib.sha256(json.dumps([source, asdict(r), len(feats), *texts[:50]]).encode()).hexdigest()[:12]
    path = work / "ctc" / f"{source}-{key}.safetensors"
    vocab = ctc_train.ctc_vocab()
    if path.is_file():
        data = load_file(str(path))
        dev_cer = float(data.pop("dev_cer"))
        ctc = CtcModule(feats[0].shape[1], r.dim, r.layers, r.heads, len(vocab), dropout=r.dropout)
        ctc.load_state_dict(data)
        return ctc.eval(), vocab, dev_cer
    ctc, vocab, dev_cer = ctc_train.train(r, feats, texts, dev_feats, dev_texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({**{k: v.contiguous() for k, v in ctc.state_dict().items()}, "dev_cer": torch.tensor(dev_cer)},
              str(path))
    return ctc, vocab, dev_cer


def main(argv: list[str] | None = None) -> int:
    from assistant.config import default_data_dir

    ap = argparse.ArgumentParser(description="Build the bundle on real pretrained models.")
    ap.add_argument("--whisper", default=DEFAULT_WHISPER, help="pretrained Whisper source (whisper-base, whisper-tiny.en)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "assistant" / "demo"),
                    help="bundle directory (default: the shipped bundle, assistant/demo)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny corpus and few steps: checks the pipeline only")
    ap.add_argument("--work", default=None, help="work dir (default: ~/.cache/assistant/real-build)")
    ap.add_argument("--data-dir", default=None, help="where the pretrained weights are assembled")
    ap.add_argument("--ctc-steps", type=int, default=None)
    ap.add_argument("--reply-steps", type=int, default=None)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    work = Path(args.work) if args.work else Path.home() / ".cache" / "assistant" / "real-build"
    timer = Timer()
    sizes = QUICK if args.quick else FULL
    ctc_r = ctc_train.CtcRecipe(seed=args.seed)
    if args.quick:
        ctc_r = replace(ctc_r, steps=30)
    if args.ctc_steps:
        ctc_r = replace(ctc_r, steps=args.ctc_steps)
    reply_r = reply_adapter.ReplyRecipe(seed=args.seed)
    if args.quick:
        reply_r = replace(reply_r, steps=3, batch=2)
    if args.reply_steps:
        reply_r = replace(reply_r, steps=args.reply_steps)

    sets = timer.run("corpus", corpora.build, sizes, seed=args.seed, work=str(work / "corpus"))
    train_rows, dev_rows = sets.pop("train"), sets.pop("dev")
    whisper = timer.run("assemble whisper", frames.load_whisper, args.whisper, data_dir)
    ids, waves, texts = timer.run("training audio", training_waves, train_rows, args.seed)
    feats = timer.run("whisper frames (train)", frames.cached_frames, work, args.whisper, "train", ids, waves, whisper)
    del waves
    dev_waves = [augment.vad_framed(w, i) for i, w in enumerate(demo_assemble.load_waves(dev_rows))]
    dev_feats = frames.cached_frames(work, args.whisper, "dev-vad", [r["id"] for r in dev_rows], dev_waves, whisper)
    ctc, vocab, dev_cer = timer.run("train ctc", cached_ctc, work, args.whisper, ctc_r, feats, texts, dev_feats,
                                    [r["text"] for r in dev_rows])
    log(f"ctc dev CER {dev_cer:.3f}")
    del feats
    metrics: dict = {"ctc_dev_cer": round(dev_cer, 4)}
    from assistant.metrics import cer

    test_waves = {}
    for name, rows in sets.items():
        test_waves[name] = [augment.vad_framed(w, i) for i, w in enumerate(demo_assemble.load_waves(rows))]
        f = frames.cached_frames(work, args.whisper, f"{name}-vad", [r["id"] for r in rows], test_waves[name],
                                 whisper)
        hyps = ctc_train.greedy(ctc_train.logits_of(ctc, f), vocab)
        metrics[f"ctc_cer_{name}"] = round(cer([r["text"] for r in rows], hyps).rate, 4)
        log(f"{name}: greedy CTC CER {metrics[f'ctc_cer_{name}']:.3f}; e.g. {hyps[0]!r} for {rows[0]['text']!r}")
    del whisper

    from assistant.engine.checkpoint import new_bridge, save_bridge
    from assistant.engine.encoder import SpeechEncoder
    from assistant.engine.engine import Engine
    from assistant.engine.llm import CausalLM
    from assistant.engine.wordlm import WordLM

    out = Path(args.out).resolve()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    enc_id, llm_id = real_assemble.write_components(tmp, ctc, vocab, args.whisper, LLM_SOURCE, data_dir,
                                                    asdict(ctc_r))
    encoder = SpeechEncoder.load(tmp / "encoder", identity=enc_id, device="cpu", data_dir=data_dir)
    llm = CausalLM.load(tmp / "llm", real_assemble.PROMPT, identity=llm_id, device="cpu", data_dir=data_dir)
    bridge = new_bridge("ctc", encoder_dim=encoder.dim, llm_dim=llm.dim, encoder_id=enc_id, llm_id=llm_id,
                        hidden_dim=0, ctc_blank_id=encoder.blank_id, version="base-ctc", text_input=True)
    from assistant.synth import text as tx

    vocabulary = sorted({w for u in tx.base_sentences(args.seed)["train"] for w in u.text.split()})
    (tmp / "vocabulary.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    engine = Engine(encoder, bridge, llm, speculative=True)
    engine.vocabulary = tuple(vocabulary)
    engine.word_lm = WordLM.from_texts(u.text for u in tx.base_sentences(args.seed)["train"])  # the same text
    engine.word_lm.save(tmp)
    dev_n = sizes["weight_dev"]
    choice, metrics["dev_wer_transcript"] = timer.run(
        "transcript decoding on dev", pick_transcript, engine, dev_rows[:dev_n], dev_waves[:dev_n])
    log("transcripts: {}, joint weight {}, vocabulary tolerance {}, word LM {} / bonus {}".format(*choice))
    from bench.peer import peer_row

    for name, rows in sets.items():  # ours and the peer (same Whisper weights) on the same VAD-framed audio
        n = sizes["eval"]
        res = timer.run(f"evaluate on {name}", demo_assemble.evaluate, engine, rows[:n], test_waves[name][:n])
        res.pop("hyps")
        peer = timer.run(f"faster-whisper on {name}", peer_row, args.whisper, data_dir, test_waves[name][:n],
                         [r["text"] for r in rows[:n]])
        res.update(peer_wer=peer["wer"], peer_wer_ci95=peer["wer_ci95"], peer_cer=peer["cer"],
                   peer_seconds_per_utt=peer["seconds_per_utt"])
        metrics[name] = res
        log(f"{name}: WER {res['wer']:.3f} {res['wer_ci95']} CER {res['cer']:.3f} (n={res['n']}); "
            f"faster-whisper {peer['wer']:.3f} {peer['wer_ci95']}")
    metrics["replies"] = reply_adapter.stage(engine, tmp, reply_r, seed=args.seed, n_eval=sizes["eval"],
                                             timer=timer, log=log)
    reg = sizes["regression"]
    timer.run("regression set", demo_assemble.save_regression, tmp, engine, sets["test-heldout"][:reg],
              test_waves["test-heldout"][:reg])
    replay = train_rows[-reg:]
    timer.run("replay set", demo_assemble.save_regression, tmp, engine, replay,
              [augment.vad_framed(w, i) for i, w in enumerate(demo_assemble.load_waves(replay))], "replay")
    build = {"command": "python -m bench.real.build" + (" --quick" if args.quick else "")
             + (f" --whisper {args.whisper}" if args.whisper != DEFAULT_WHISPER else ""), "seed": args.seed,
             "whisper": args.whisper, "llm": LLM_SOURCE, "recipes": {"ctc": asdict(ctc_r), "reply_adapter": asdict(reply_r)},
             "corpus": {k: len(v) for k, v in {"train": train_rows, "dev": dev_rows, **sets}.items()},
             "training_clips": len(texts), "augmented_share": f"1/{AUG_SHARE}",
             "held_out_voices": sorted(corpora.HELD_OUT) + ["espeak-ng heldout speakers (en-029, klatt*, m8)",
                                                            str(corpora.NEW_USERS["sox"])],
             "stage_seconds": timer.stages, "total_seconds": round(sum(timer.stages.values()), 1),
             "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}",
             "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    save_bridge(bridge, tmp / "bridge" / "ctc", metrics={"dev_wer": min(metrics["dev_wer_transcript"].values())},
                training={"note": "text input: no trained parameters; the CTC module is the encoder's"},
                created_at=build["built_at"])
    real_assemble.write_manifest(tmp, name=f"{args.whisper}-smollm2", enc_id=enc_id, llm_id=llm_id, build=build, metrics=metrics,
                                 prompt=engine.llm.prompt, description=DESCRIPTION.format(whisper=args.whisper))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log(f"bundle written to {out} in {build['total_seconds']:.0f} s")
    print(json.dumps({"metrics": metrics, "stage_seconds": timer.stages}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
