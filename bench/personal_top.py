"""Experiment: personalize the top of the speech encoder itself, not only what sits on its output.

    python -m bench.personal_top --user SPEC [--n 100] [--test-n 300] [--steps 200]
                                 [--lr 2e-4] [--top-lr 1e-4] [--anchor 1e-2] [--replay 0.25] [--json FILE]

The shipped personalization (the ``ctc`` job) trains a personal CTC head and a 9-frame adapter on the
CTC module's output; on a voice far from training (the sox-warped one) nothing it learns undoes a
telephone band (bench/RESULTS.md). Here the encoder's top (``SpeechEncoder.personal_top``: its last
``whisper.TOP_LAYERS`` Whisper layers, Whisper's final layer norm and our CTC module) is copied and trained with the CTC loss on the user's labels, over the
Whisper states below them (computed once: the lower layers stay frozen), with an anchor to the copied
weights and generic replay. Rows, on the same 300 test utterances as bench.personalize (same seeded
corpus): the base, the user's words spotted (no training), and the trained top with the words spotted,
served to every utterance and routed by voice (the shipped voice routing's rule on the base features).

Generic speech (the bundle's regression and replay texts, each in its own voice) is synthesized here:
the bundle's sets hold only the CTC module's output, and a trained top needs the states below it.
The top alone, outside the job: the daemon's job (``alignment.personal_top``; bench.personalize
``top@daemon``) trains the same top under its personal head and adapter, in micro-batches, and gates it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--user", required=True)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--test-n", type=int, default=300)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=2e-4, help="the CTC module's learning rate")
    p.add_argument("--top-lr", type=float, default=1e-4, help="the Whisper layers' learning rate")
    p.add_argument("--anchor", type=float, default=1e-2)
    p.add_argument("--replay", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)

    import numpy as np
    import torch

    from assistant.alignment.lexicon import personal_lexicon, with_lexicon
    from assistant.alignment.trainers.base import routed_by_voice
    from assistant.audio import load_audio
    from assistant.config import AlignmentConfig, load_config
    from assistant.engine.bridge import with_personal_head
    from assistant.engine.checkpoint import LoadedBridge
    from assistant.engine.encoder import EncoderOutput
    from assistant.engine.engine import Engine
    from assistant.metrics import wer
    from assistant.synth.voices import synthesize
    from assistant.units import TARGET_RATE_HZ
    from bench.peer import names_right
    from bench.personalize import PeakRss, log, personal_words, user_corpus

    torch.manual_seed(a.seed)
    t_start = time.perf_counter()
    bundle = load_config(None).bundle_path()
    engine = Engine.from_bundle(bundle, device="cpu")
    enc = engine.encoder
    adapt_rows, test_rows = user_corpus(a.user, a.n, a.test_n, a.seed)
    sets = {name: json.loads((bundle / name / "utterances.json").read_text())["utterances"]
            for name in ("regression", "replay")}
    waves = {"adapt": [load_audio(r["audio"], max_duration_s=60).samples for r in adapt_rows],
             "test": [load_audio(r["audio"], max_duration_s=60).samples for r in test_rows],
             **{k: [synthesize(u["voice"], u["text"], seed=0) for u in v] for k, v in sets.items()}}
    refs = {"adapt": [r["text"] for r in adapt_rows], "test": [r["text"] for r in test_rows],
            **{k: [u["text"] for u in v] for k, v in sets.items()}}
    encoded = {k: enc.encode_many(w) for k, w in waves.items()}
    lower = {k: [e.lower.clone() for e in v] for k, v in encoded.items()}
    base_feats = {k: [e.features for e in v] for k, v in encoded.items()}
    log(f"{a.user}: {sum(map(len, lower.values()))} utterances encoded in {time.perf_counter() - t_start:.0f} s")
    head = copy.deepcopy(enc.ctc_head).float()
    words = personal_lexicon(refs["adapt"], [], vocabulary=engine.vocabulary)
    cfg = AlignmentConfig()
    spot = with_lexicon(engine.bridge, words, cfg.lexicon_bonus, spotting=True, spot_margin=cfg.lexicon_spot_margin)
    # the shipped routing rule (trainers.base.routed_by_voice) on the base features
    grown = with_personal_head(engine.bridge.module, enc.ctc_head, 0)
    router = routed_by_voice(LoadedBridge(grown, engine.bridge.config), base_feats["adapt"], base_feats["replay"]).module

    def read(top, name, bridge, routed=False):
        hyps, users = [], 0
        with torch.inference_mode():
            for x, f0, w in zip(lower[name], base_feats[name], waves[name]):
                mine = top is not None and (not routed or router.is_users_voice(f0))
                users += mine
                f = top(x) if mine else f0
                e = EncoderOutput(features=f, ctc_logits=head(f), frame_rate_hz=enc.frame_rate_hz)
                hyps.append(engine.transcribe_encoded(e, len(w) / TARGET_RATE_HZ, bridge=bridge)[0])
        return hyps, users

    rows = []

    def row(method, top, bridge, seconds=0.0, extra_mb=0.0, routed=False):
        hyps, users = read(top, "test", bridge, routed)
        g_hyps, g_users = read(top, "regression", engine.bridge, routed)
        w = wer(refs["test"], hyps)
        named = [(h, personal_words(r)) for h, r in zip(hyps, refs["test"]) if personal_words(r)]
        r = {"user": a.user, "method": method, "wer": round(w.rate, 4), "wer_ci95": [round(x, 4) for x in w.ci95],
             "names_acc": round(sum(names_right(h, ws) for h, ws in named) / max(1, len(named)), 3),
             "generic_wer": round(wer(refs["regression"], g_hyps).rate, 4), "seconds": round(seconds, 1),
             "extra_mb": round(extra_mb, 1), "routed_user_share": round(users / len(hyps), 3) if routed else None,
             "routed_generic_share": round(g_users / len(g_hyps), 3) if routed else None}
        log(f"{method}: {r}")
        rows.append(r)

    row("base", None, engine.bridge)
    row("spot", None, spot)
    top = enc.personal_top()  # the encoder's last TOP_LAYERS Whisper layers, its layer norm, our CTC module
    whisper_params = [q for m in (top.layers, top.norm) for q in m.parameters()]
    ctc_params = [q for m in (top.proj, top.ctc_layers, top.ctc_norm, head) for q in m.parameters()]
    params = whisper_params + ctc_params
    for q in params:
        q.requires_grad_(True)
    init = [q.detach().clone() for q in params]
    opt = torch.optim.AdamW([{"params": ctc_params, "lr": a.lr}, {"params": whisper_params, "lr": a.top_lr}],
                            weight_decay=0.0)
    targets = {k: [torch.tensor(enc.ctc_ids(t)) for t in refs[k]] for k in ("adapt", "replay")}
    rng = np.random.default_rng(a.seed)
    n_rep = round(16 * a.replay)
    t0 = time.perf_counter()
    with PeakRss() as mem:
        top.train()
        for step in range(1, a.steps + 1):
            idx = rng.choice(len(lower["adapt"]), 16 - n_rep, replace=len(lower["adapt"]) < 16 - n_rep).tolist()
            ridx = rng.choice(len(lower["replay"]), n_rep, replace=False).tolist() if n_rep else []
            xs = [lower["adapt"][i] for i in idx] + [lower["replay"][i] for i in ridx]
            ts = [targets["adapt"][i] for i in idx] + [targets["replay"][i] for i in ridx]
            x = torch.nn.utils.rnn.pad_sequence(xs, batch_first=True)
            lens = torch.tensor([len(f) for f in xs])
            lp = head(top(x, lens)).log_softmax(-1).transpose(0, 1)
            loss = torch.nn.functional.ctc_loss(lp, torch.cat(ts), lens, torch.tensor([len(t) for t in ts]),
                                                blank=enc.blank_id, zero_infinity=True)
            loss = loss + a.anchor * sum(((q - q0) ** 2).sum() for q, q0 in zip(params, init))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if step % 50 == 0:
                log(f"step {step}/{a.steps} loss {loss.item():.3f}")
    seconds = time.perf_counter() - t0
    top.eval()
    name = f"top{enc.top_layers}+spot"
    row(name, top, spot, seconds, mem.extra_mb)
    row(f"{name}+voice", top, spot, seconds, mem.extra_mb, routed=True)
    print(table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "rows": rows}, f, indent=1)
    return 0


def table(rows: list[dict]) -> str:
    head = "| user | method | WER [95% CI] | names right | generic WER | train s | extra MB |\n|---|---|---|---|---|---|---|\n"
    return head + "".join(
        f"| `{r['user'].replace('|', chr(92) + '|')}` | {r['method']} | {r['wer']:.3f} [{r['wer_ci95'][0]:.3f}, "
        f"{r['wer_ci95'][1]:.3f}] | {r['names_acc']:.2f} | {r['generic_wer']:.3f} | {r['seconds']:.0f} "
        f"| {r['extra_mb']:.0f} |\n" for r in rows)


if __name__ == "__main__":
    sys.exit(main())
