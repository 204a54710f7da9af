"""Quality benchmark: how well does the assistant understand one user's voice, before and after
personalization?

    python -m bench.personalize --user SPEC [--n 25,50,100] [--methods base,...] [--seed S]
                                [--test-n 360] [--bundle DIR] [--json FILE] [--no-results]

The "user" is any voice spec (assistant/synth/voice_spec.py), e.g. ``flite:slt`` or
``espeak-ng:en-029+klatt``. The user reads enrollment prompts (personal names and places included:
the user's contacts) — the first N of them adapt the bridge — and is tested on held-out sentences:
base request-domain test sentences plus personal test sentences that no base model was trained on.

Per (n, method) row: ``wer`` with a bootstrap 95% interval (``wer_ci95``), ``cer``, ``names_acc``
(share of personal test utterances whose personal names/places are all recognized), ``generic_wer``
(WER on the bundle's generic regression set: forgetting), ``seconds`` (adaptation wall time).
``method = base`` is the shipped bridge without personalization. Methods register themselves in
``METHODS`` (the alignment trainers plug in there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

# name -> fn(engine, adapt: list[(EncoderOutput, text)], seed) -> LoadedBridge
Method = Callable[..., object]


def trainer(method: str, *, steps: int = 200, batch: int = 16, lr: float = 1e-3, anchor: float = 0.0,
            replay_share: float = 0.0, personal_head: bool = False, parent_lr_scale: float = 1.0,
            lexicon_bonus: float = 0.0, voice_routing: bool = False, adapter_kernel: int = 1,
            adapter_dropout: float = 0.0, spotting: bool = False) -> Method:
    """A personalization method: the daemon's job function (``assistant.alignment.personalize``) with
    these ``[alignment]`` settings, all adaptation utterances trained on, not gated (the benchmark
    scores every candidate on its own test set)."""
    def run(engine, adapt, seed):
        from assistant.alignment.data import Example, LabelledSet
        from assistant.alignment.personalize import bundle_set, personalize
        from assistant.config import AlignmentConfig

        cfg = AlignmentConfig(method=method, max_steps=steps, batch_size=batch, learning_rate=lr,
                              anchor_weight=anchor, replay_share=replay_share, personal_head=personal_head,
                              parent_lr_scale=parent_lr_scale, lexicon_bonus=lexicon_bonus,
                              lexicon_spotting=spotting, voice_routing="on" if voice_routing else "off",
                              adapter_kernel=adapter_kernel, adapter_dropout=adapter_dropout,
                              gradient_checkpointing=False)
        train = [Example(i, t, e, e.n_frames / e.frame_rate_hz) for i, (e, t) in enumerate(adapt)]
        data = LabelledSet(train=train, heldout=[], cached=len(train), reencoded=0)
        return personalize(engine, data, cfg, method=method, seed=seed, gated=False, generic=[],
                           replay=bundle_set(engine, "replay") if replay_share else []).candidate

    return run


_JOBS: dict = {}  # (method, changes, n, seed) -> the job's variants: a routed twin reuses its training


def daemon_method(method: str, variant: int = 0, **changes) -> Method:
    """``method`` with the daemon's ``[alignment]`` defaults (routing off: nothing gates here) and
    ``changes`` to them (e.g. ``personal_top=True``). ``variant`` 1 with ``voice_routing="auto"``: the
    voice-routed twin the gate would also try, from the same training (its row's time is 0)."""
    def run(engine, adapt, seed):
        from dataclasses import replace

        from assistant.alignment.data import Example, LabelledSet
        from assistant.alignment.personalize import personalize
        from assistant.config import AlignmentConfig

        key = (method, tuple(sorted(changes.items())), len(adapt), seed)
        if key not in _JOBS:
            cfg = replace(AlignmentConfig(), method=method, **{"voice_routing": "off", **changes})
            train = [Example(i, t, e, e.n_frames / e.frame_rate_hz) for i, (e, t) in enumerate(adapt)]
            out = personalize(engine, LabelledSet(train=train, heldout=[], cached=len(train), reencoded=0), cfg,
                              method=method, seed=seed, gated=False, generic=[])
            if out.candidate is None:
                raise SystemExit(f"{method}: {out.reason}")
            _JOBS.clear()  # one job's weights at a time
            _JOBS[key] = out.variants
        return _JOBS[key][variant]

    return run


def words_only(engine, adapt, seed):
    """No training: the serving bridge with the user's own words (from the adaptation labels) for word
    spotting, as a job attaches them to its candidate; what the words alone are worth."""
    from assistant.alignment.lexicon import personal_lexicon, with_lexicon
    from assistant.config import AlignmentConfig

    words = personal_lexicon([t for _, t in adapt], [], vocabulary=engine.vocabulary)
    cfg = AlignmentConfig()
    return with_lexicon(engine.bridge, words, cfg.lexicon_bonus, spotting=True, spot_margin=cfg.lexicon_spot_margin)


# The shipped adapter (alignment.adapter_kernel / adapter_dropout): 9 frames of context, dropout 0.3.
# The "-frame" methods use a per-frame adapter without dropout. bench/RESULTS.md rows named "ctc" or "head"
# that come before its section "Personalization: a context adapter, word spotting, ..." used that per-frame
# adapter: they are ctc-frame and head-frame rows.
SHIPPED_ADAPTER = {"adapter_kernel": 9, "adapter_dropout": 0.3}
CTC_STEPS = {"steps": 600, "lr": 3e-3}  # alignment.trainers.STEP_DEFAULTS["ctc"]

METHODS: dict[str, Method | None] = {
    "base": None,
    "spot": words_only,
    "backprop": trainer("backprop"),
    "backprop+replay": trainer("backprop", anchor=1e-2, replay_share=0.25),
    "backprop-gentle": trainer("backprop", steps=100, lr=2e-4, anchor=1e-2, replay_share=0.25),
    # head: backprop through the LLM + personal head with the shipped adapter, the backprop counterpart of ctc
    "head": trainer("backprop", anchor=1e-2, replay_share=0.25, personal_head=True, parent_lr_scale=0.1,
                    **SHIPPED_ADAPTER),
    "head-frame": trainer("backprop", anchor=1e-2, replay_share=0.25, personal_head=True, parent_lr_scale=0.1),
    "head-only": trainer("backprop", replay_share=0.25, personal_head=True, parent_lr_scale=0.0),
    "head+lexicon": trainer("backprop", anchor=1e-2, replay_share=0.25, personal_head=True, parent_lr_scale=0.1,
                            lexicon_bonus=1.0),
    "head+lexicon-0.5": trainer("backprop", anchor=1e-2, replay_share=0.25, personal_head=True,
                                parent_lr_scale=0.1, lexicon_bonus=0.5),
    # ctc: the default method with the [alignment] defaults, less spotting and routing. What the daemon's job
    # serves is ctc+spot or ctc+voice+spot: the gate ("auto" routing) keeps the better one that passes
    "ctc": trainer("ctc", anchor=1e-2, replay_share=0.25, personal_head=True, **SHIPPED_ADAPTER, **CTC_STEPS),
    "ctc+voice": trainer("ctc", anchor=1e-2, replay_share=0.25, personal_head=True, voice_routing=True,
                         **SHIPPED_ADAPTER, **CTC_STEPS),
    "head+voice": trainer("backprop", anchor=1e-2, replay_share=0.25, personal_head=True, parent_lr_scale=0.1,
                          voice_routing=True, **SHIPPED_ADAPTER),
    "ctc+spot": trainer("ctc", anchor=1e-2, replay_share=0.25, personal_head=True, spotting=True, **SHIPPED_ADAPTER,
                        **CTC_STEPS),
    "head+spot": trainer("backprop", anchor=1e-2, replay_share=0.25, personal_head=True, parent_lr_scale=0.1,
                         spotting=True, **SHIPPED_ADAPTER),
    "ctc+voice+spot": trainer("ctc", anchor=1e-2, replay_share=0.25, personal_head=True, voice_routing=True,
                              spotting=True, **SHIPPED_ADAPTER, **CTC_STEPS),
    "head+voice+spot": trainer("backprop", anchor=1e-2, replay_share=0.25, personal_head=True, parent_lr_scale=0.1,
                               voice_routing=True, spotting=True, **SHIPPED_ADAPTER),
    "ctc-600": trainer("ctc", anchor=1e-2, replay_share=0.25, personal_head=True, **CTC_STEPS),
    "ctc-frame": trainer("ctc", anchor=1e-2, replay_share=0.25, personal_head=True),
    "ctc-no-anchor": trainer("ctc", replay_share=0.25, personal_head=True),
    "ctc-replay50": trainer("ctc", anchor=1e-2, replay_share=0.5, personal_head=True),
    "ctc-anchor1": trainer("ctc", anchor=1.0, replay_share=0.5, personal_head=True),
    "ctc-anchor10": trainer("ctc", anchor=10.0, replay_share=0.5, personal_head=True),
    "ctc-frame+voice": trainer("ctc", anchor=1e-2, replay_share=0.25, personal_head=True, voice_routing=True),
    "head-frame+voice": trainer("backprop", anchor=1e-2, replay_share=0.25, personal_head=True,
                                parent_lr_scale=0.1, voice_routing=True),
    "ctc+lexicon": trainer("ctc", anchor=1e-2, replay_share=0.25, personal_head=True, lexicon_bonus=1.0),
    # What a user who sets [alignment] method = X gets: the daemon's defaults for X (its steps and rate,
    # personal head, adapter, anchor, replay, spotting), all adaptation utterances, routing off.
    **{f"{m}@daemon": daemon_method(m) for m in ("ctc", "backprop", "zo", "embed")},
    # the daemon's ctc job that also trains a personal top (the encoder's last Whisper layers and our CTC
    # module: bench/personal_top.py), served to every utterance or routed by voice; scored on the spoken
    # generic set (a top reads lower states, which the bundle's regression set does not hold)
    "top@daemon": daemon_method("ctc", personal_top=True, voice_routing="auto"),
    "top+voice@daemon": daemon_method("ctc", 1, personal_top=True, voice_routing="auto"),
    "zo": trainer("zo", steps=300, lr=1e-4),
    "embed": trainer("embed"),
}


def log(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def user_corpus(spec: str, n_adapt: int, n_test: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Adaptation rows (enrollment prompts) and test rows (1/3 personal, 2/3 base test sentences)."""
    from assistant.synth import text as tx
    from assistant.synth.corpus import default_cache_dir, generate, read_manifest

    work = default_cache_dir().parent / "personalize" / spec.replace("/", "_").replace("|", "~").replace(" ", "_")
    adapt = tx.enrollment_prompts(n_adapt, seed) if n_adapt else []
    personal = tx.personal_sentences(seed, "test")[: n_test // 3]
    base = tx.base_sentences(seed)["test"][: n_test - len(personal)]
    rows = {}
    for name, utts in (("adapt", adapt), ("test", personal + base)):
        if not utts:
            rows[name] = []
            continue
        manifest = generate([(spec, u) for u in utts], work / name, seed=seed)
        rows[name] = read_manifest(manifest)
    return rows["adapt"], rows["test"]


def personal_words(text: str) -> list[str]:
    """The personal names and places ``text`` holds, possessives bare ("barnaby's" -> "barnaby")."""
    from assistant.synth.lexicon import PERSONAL_NAMES, PERSONAL_PLACES
    from bench.peer import bare

    words = set(PERSONAL_NAMES) | set(PERSONAL_PLACES)
    return [bare(w) for w in text.split() if bare(w) in words]


def transcribe_encoded(engine, bridge, items: Sequence[tuple[object, float]]) -> list[str]:
    out = []
    for enc, dur in items:
        text, _, _, _ = engine.transcribe_encoded(enc, dur, bridge=bridge)
        out.append(text)
    return out


def score(engine, bridge, test: list[tuple[object, float, dict]], generic: list) -> dict:
    from assistant.metrics import cer, wer
    from bench.peer import names_right

    hyps = transcribe_encoded(engine, bridge, [(e, d) for e, d, _ in test])
    refs = [r["text"] for _, _, r in test]
    w, c = wer(refs, hyps), cer(refs, hyps)
    named = [(h, personal_words(r)) for h, r in zip(hyps, refs) if personal_words(r)]
    names_acc = sum(names_right(h, ws) for h, ws in named) / len(named) if named else float("nan")
    g_hyps = transcribe_encoded(engine, bridge, [(g.encoded, g.duration_s) for g in generic])
    g = wer([g.text for g in generic], g_hyps)
    return {"wer": round(w.rate, 4), "wer_ci95": [round(x, 4) for x in w.ci95], "cer": round(c.rate, 4),
            "names_acc": round(names_acc, 4), "generic_wer": round(g.rate, 4), "test_n": len(test),
            "generic_n": len(generic), "pairs": [[r, h] for r, h in zip(refs, hyps)]}


def run(user: str, ns: list[int], methods: list[str], seed: int, test_n: int, bundle: str | None,
        peer: bool = True) -> list[dict]:
    from assistant.alignment.regression import load_regression_set
    from assistant.config import load_config
    from assistant.engine.engine import Engine
    from assistant.synth.voice_spec import parse
    from assistant.synth.voices import check_voice

    spec = str(check_voice(parse(user)))
    bundle_dir = Path(bundle) if bundle else load_config(None).bundle_path()
    engine = Engine.from_bundle(bundle_dir, device="cpu")
    generic_dir = bundle_dir / "regression"
    if any(m.startswith("top") for m in methods):  # every row of the run on the same (spoken) generic speech
        from assistant.alignment.spoken import spoken_set

        generic = spoken_set(engine, "regression")
    else:
        generic = load_regression_set(generic_dir, encoder_id=engine.encoder.identity,
                                      ctc_head=engine.encoder.ctc_head) if generic_dir.is_dir() else []
    log(f"user {spec}: synthesizing {max(ns, default=0)} adaptation + {test_n} test utterances")
    adapt_rows, test_rows = user_corpus(spec, max(ns, default=0), test_n, seed)
    from assistant.audio import load_audio

    def encode(rows: list[dict]) -> list[tuple[object, float, dict]]:
        waves = [load_audio(r["audio"], max_duration_s=60).samples for r in rows]
        return [(e, len(w) / 16000, r) for e, w, r in zip(engine.encoder.encode_many(waves), waves, rows)]

    test = encode(test_rows)
    adapt = encode(adapt_rows)
    rows = []
    from bench.peer import peer_row, whisper_source_of

    source = whisper_source_of(bundle_dir)
    if source is not None and peer:  # the peer on the same Whisper weights and the same audio, in the same run
        waves = [load_audio(r["audio"], max_duration_s=60).samples for r in test_rows]
        p = peer_row(source, load_config(None).data_path, waves, [r["text"] for r in test_rows],
                     [personal_words(r["text"]) for r in test_rows])
        p["pairs"] = [[r["text"], h] for r, h in zip(test_rows, p.pop("hyps"))]
        rows.append({"user": spec, "n": 0, "method": f"faster-whisper {source}", **p, "generic_wer": float("nan"),
                     "test_n": len(test_rows), "seconds": p["seconds_per_utt"], "seed": seed})
        log(f"faster-whisper {source}: WER {p['wer']:.3f} {p['wer_ci95']} ({p['seconds_per_utt']:.2f} s per utterance)")
    base_bridge = engine.bridge
    for method in methods:
        for n in ([0] if method == "base" else ns):
            t0 = time.perf_counter()
            with PeakRss() as mem:
                bridge = base_bridge if method == "base" else METHODS[method](
                    engine, [(e, r["text"]) for e, _, r in adapt[:n]], seed)
            seconds = time.perf_counter() - t0
            s = score(engine, bridge, test, generic)
            row = {"user": spec, "n": n, "method": method, **s, "seconds": round(seconds, 2),
                   "extra_mb": round(mem.extra_mb, 1), "serving_mb": round(mem.before_mb, 1),
                   "bundle": engine.bundle.manifest.name if engine.bundle else str(bundle_dir), "seed": seed}
            log(f"{method} n={n}: WER {s['wer']:.3f} {s['wer_ci95']} names {s['names_acc']:.2f} "
                f"generic {s['generic_wer']:.3f} ({seconds:.1f} s)")
            rows.append(row)
    return rows


class PeakRss:
    """The process's peak resident memory while the block runs, above what it was when it started
    (sampled every 20 ms from /proc: ``ru_maxrss`` only ever grows, so it cannot measure a second method)."""

    def __init__(self, every_s: float = 0.02) -> None:
        import threading

        self.every_s, self.extra_mb = every_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def rss_mb() -> float:
        import resource

        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            self.extra_mb = max(self.extra_mb, self.rss_mb() - self.before_mb)

    def __enter__(self) -> "PeakRss":
        self.before_mb = self.rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.extra_mb = max(self.extra_mb, self.rss_mb() - self.before_mb)


def table(rows: list[dict]) -> str:
    """One row per (method, n); the faster-whisper row's last column is its time per utterance."""
    head = ("| user | n | method | WER [95% CI] | CER | names acc | generic WER | adapt s | extra MB |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| `{r['user'].replace('|', chr(92) + '|')}` | {r['n']} | {r['method']} | {r['wer']:.3f} [{r['wer_ci95'][0]:.3f}, {r['wer_ci95'][1]:.3f}] "
        f"| {r['cer']:.3f} | {r['names_acc']:.2f} | {r['generic_wer']:.3f} | {r['seconds']:.1f} "
        f"| {r['extra_mb'] if 'extra_mb' in r else '-'} |\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.personalize", description=__doc__.splitlines()[0])
    ap.add_argument("--user", required=True, help="voice spec of the user, e.g. flite:slt")
    ap.add_argument("--n", default="25,50,100", help="numbers of adaptation utterances")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-n", type=int, default=360, help="test utterances (>= 300 keeps the CI near +-5 points)")
    ap.add_argument("--bundle", help="bundle directory (default: the configured one, else the demo)")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--no-results", action="store_true", help="do not append to bench/RESULTS.md")
    ap.add_argument("--no-peer", action="store_true", help="skip faster-whisper (quick checks only: every "
                    "figure for RESULTS.md is measured with the peer beside it)")
    args = ap.parse_args(argv)
    from assistant.errors import AssistantError

    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown method(s) {unknown}; available: {', '.join(METHODS)}")
    ns = sorted({int(x) for x in args.n.split(",") if x})
    t0 = time.perf_counter()
    try:
        rows = run(args.user, ns, methods, args.seed, args.test_n, args.bundle, peer=not args.no_peer)
    except AssistantError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if not args.no_results:
        import shlex

        cmd = "python -m bench.personalize " + shlex.join(argv if argv is not None else sys.argv[1:])
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write(f"\n### personalize: `{rows[0]['user']}` ({time.strftime('%Y-%m-%d')}, "
                    f"{time.perf_counter() - t0:.0f} s)\n\n`{cmd}`\n\n{table(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
