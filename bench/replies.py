"""Reply quality: the bundle's LLM answering held-out requests, from their text or from their speech.

    python -m bench.replies [--bundle DIR] [--n 100] [--seed 0] [--speech VOICE ...] [--prompts]

Each request is a base TEST sentence (never in any training text, the reply adapter's included) with
its template reply. Scores: ``exact`` (the normalized reply equals the reference), ``equivalent`` (the
same words in another order: "turning the fan off" for "turning off the fan"), ``slots kept`` (every
word of more than three letters that the reference shares with the request, i.e. its names, numbers,
rooms, times and places, is in the reply, and the reply is no apology), per domain, and seconds per
reply. The bundle's replies come from its skills (assistant/skills: calculations computed) and else
its LLM with the reply adapter; "the LLM alone" turns the skills off. ``--speech held-out|flite|
festival|sox``: the same requests spoken by that new-user voice (VAD-framed), transcribed by the
bundle, and the reply written from that transcript; with ``--personalize N`` (flite, festival, sox) also
after the daemon's default job on N enrollment prompts spoken by that voice (bench.personalize's
corpus; never a test sentence), as the user would hear it after a job. ``--prompts``:
also the LLM without the reply adapter and with other reply prompts.

The clock is fixed (``NOW``), so replies are reproducible; a time or date question the templates answer
"Let me check the calendar" is judged against the clock skill's answer to the request as it was said.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections import Counter
from datetime import datetime, timezone

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=timezone.utc)
SHORT = "You are a voice assistant. Reply in one short sentence that says what you are doing for the user."


def slots(request: str, reply: str) -> list[str]:
    from assistant.metrics import normalize

    words = set(normalize(request).split())
    return [w for w in normalize(reply).split() if w in words and len(w) > 3]


def judge(request: str, reply: str, ref: str) -> dict[str, bool]:
    from assistant.metrics import normalize

    got, want = normalize(reply).split(), normalize(ref).split()
    return {"exact": got == want, "equivalent": Counter(got) == Counter(want),
            "slots_kept": all(w in got for w in slots(request, ref)) and "sorry" not in reply.lower()}


def score(engine, pairs, transcripts=None) -> dict:
    """Replies to ``pairs`` (request, reference reply); ``transcripts``: what the engine heard instead of
    the request text (the reference stays the reply to what was said)."""
    totals: Counter = Counter()
    by_domain: dict[str, Counter] = {}
    t0 = time.perf_counter()
    examples = []
    from assistant.skills import answer

    for i, (request, ref, *domain) in enumerate(pairs):
        heard = transcripts[i] if transcripts is not None else request
        reply = engine.respond(heard, now=NOW).reply
        said = answer(request, NOW)
        ref = said.reply if said is not None and said.skill == "clock" else ref
        verdict = judge(request, reply, ref)
        totals.update(k for k, v in verdict.items() if v)
        d = by_domain.setdefault(domain[0] if domain else "all", Counter())
        d.update(["n", *(k for k, v in verdict.items() if v)])
        if not verdict["equivalent"] and len(examples) < 4:
            examples.append((heard, reply, ref))
    n = len(pairs)
    return {"exact": totals["exact"], "equivalent": totals["equivalent"], "slots_kept": totals["slots_kept"],
            "n": n, "seconds_per_reply": round((time.perf_counter() - t0) / max(n, 1), 3),
            "by_domain": {k: f"{v['equivalent']}/{v['n']}" for k, v in sorted(by_domain.items())},
            "misses": examples}


def heard(engine, utterances, voice: str, seed: int, bridge=None) -> tuple[list[str], float]:
    """Transcripts of ``utterances`` spoken by a new-user voice, VAD-framed; and their WER."""
    from assistant.metrics import wer
    from assistant.synth.voices import synthesize
    from assistant.synth.voices_sets import heldout_voice_for
    from bench.demo.augment import vad_framed
    from bench.real.corpora import NEW_USERS

    waves = []
    for i, u in enumerate(utterances):
        spec = heldout_voice_for(u.id, seed) if voice == "held-out" else NEW_USERS[voice]
        waves.append(vad_framed(synthesize(spec, u.text, seed=seed), i))
    encoded = engine.encoder.encode_many(waves)
    hyps = [engine.transcribe_encoded(e, len(w) / 16000, bridge=bridge)[0] for e, w in zip(encoded, waves)]
    return hyps, wer([u.text for u in utterances], hyps).rate


def personalized(engine, voice: str, n: int, seed: int):
    """The bridge the daemon's default job trains on ``n`` enrollment prompts in ``voice`` (not gated)."""
    from assistant.audio import load_audio
    from bench.personalize import daemon_method, user_corpus
    from bench.real.corpora import NEW_USERS

    adapt, _ = user_corpus(str(NEW_USERS[voice]), n, 0, seed)
    encoded = engine.encoder.encode_many([load_audio(r["audio"], max_duration_s=60).samples for r in adapt])
    return daemon_method("ctc")(engine, [(e, r["text"]) for e, r in zip(encoded, adapt)], seed)


def row(name: str, r: dict) -> str:
    n = r["n"]
    return (f"| {name} | {r['exact']} / {n} | {r['equivalent']} / {n} | {r['slots_kept']} / {n} | "
            f"{r['seconds_per_reply']} | {' '.join(f'{k} {v}' for k, v in r['by_domain'].items())} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.replies", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None, help="bundle directory (default: the configured one)")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speech", nargs="*", default=[], choices=["held-out", "flite", "festival", "sox"],
                    help="also from the speech of these new-user voices")
    ap.add_argument("--prompts", action="store_true", help="also without the adapter and with other prompts")
    ap.add_argument("--personalize", type=int, default=0, metavar="N",
                    help="also after the daemon's default job on N enrollment prompts in each --speech voice")
    args = ap.parse_args(argv)
    if args.personalize and "held-out" in args.speech:
        ap.error("--personalize needs one user's voice: flite, festival or sox (held-out is many speakers)")
    from assistant.config import load_config
    from assistant.engine.engine import Engine
    from assistant.synth import text as tx

    cfg = load_config(None)
    path = args.bundle or cfg.bundle_path()
    engine = Engine.from_bundle(path, device="cpu", data_dir=cfg.data_path)
    tests = tx.base_sentences(args.seed)["test"][: args.n]
    pairs = [(u.text, u.reply, u.domain) for u in tests]
    print("| replies | exact | equivalent | slots kept | s per reply | equivalent by domain |\n|---|---|---|---|---|---|")
    variants = {"the bundle's (text)": (engine, {}, True), "the LLM alone, no skills (text)": (engine, {}, False)}
    if args.prompts:
        plain = Engine.from_bundle(path, device="cpu", data_dir=cfg.data_path, reply_adapter=False, skills=False)
        variants |= {"no adapter, bundle's prompt": (plain, {}, False),
                     "no adapter, no system prompt": (plain, {"system_prompt": None, "response_copy_bonus": 0.0},
                                                      False),
                     "no adapter, short": (plain, {"system_prompt": SHORT, "response_copy_bonus": 0.0}, False),
                     "no adapter, short + copy bonus 0.5": (plain, {"system_prompt": SHORT,
                                                                    "response_copy_bonus": 0.5}, False)}
    for name, (eng, change, skills) in variants.items():
        base, kept = eng.llm.prompt, eng.skills
        eng.llm.prompt = dataclasses.replace(base, **change)
        eng.skills = kept if skills else None
        r = score(eng, pairs)
        eng.llm.prompt, eng.skills = base, kept
        print(row(name, r))
        for said, reply, ref in r["misses"][:2]:
            print(f"|   e.g. | {said!r} -> {reply!r} (want {ref!r}) | | | | |")
    for voice in args.speech:
        hyps, rate = heard(engine, tests, voice, args.seed)
        r = score(engine, pairs, hyps)
        print(row(f"from {voice} speech (transcript WER {rate:.3f})", r))
        for said, reply, ref in r["misses"][:2]:
            print(f"|   e.g. | heard {said!r} -> {reply!r} (want {ref!r}) | | | | |")
        if args.personalize:
            hyps, rate = heard(engine, tests, voice, args.seed, bridge=personalized(engine, voice, args.personalize,
                                                                                   args.seed))
            r = score(engine, pairs, hyps)
            print(row(f"from {voice} speech after a job on {args.personalize} of its prompts (WER {rate:.3f})", r),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
