"""Reply quality: the bundle's LLM answering held-out requests (from their text), per reply prompt.

    python -m bench.replies [--bundle DIR] [--n 20] [--seed 0]

Each request is a base test sentence (never in any training text) with its template reply. Per prompt
variant: ``exact`` (the normalized reply equals the reference) and ``slots kept`` (every word of more
than three letters that the reference reply shares with the request, i.e. its names, numbers, rooms,
times and places, appears in the reply, and the reply is no apology), and seconds per reply. The
variants: the bundle's own prompt, no system prompt, and a short system prompt with and without the
copy bonus (``prompt.response_copy_bonus``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SHORT = "You are a voice assistant. Reply in one short sentence that says what you are doing for the user."


def slots(request: str, reply: str) -> list[str]:
    from assistant.metrics import normalize

    words = set(normalize(request).split())
    return [w for w in normalize(reply).split() if w in words and len(w) > 3]


def score(engine, pairs) -> dict:
    from assistant.metrics import normalize

    exact = kept = 0
    t0 = time.perf_counter()
    examples = []
    for request, ref in pairs:
        reply, _ = engine.respond_text(request)
        exact += normalize(reply) == normalize(ref)
        kept += all(w in normalize(reply).split() for w in slots(request, ref)) and "sorry" not in reply.lower()
        examples.append((request, reply))
    return {"exact": exact, "slots_kept": kept, "n": len(pairs),
            "seconds_per_reply": round((time.perf_counter() - t0) / max(len(pairs), 1), 2), "examples": examples[:3]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.replies", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None, help="bundle directory (default: the configured one)")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from assistant.config import load_config
    from assistant.engine.engine import Engine
    from assistant.synth import text as tx

    cfg = load_config(None)
    engine = Engine.from_bundle(args.bundle or cfg.bundle_path(), device="cpu", data_dir=cfg.data_path)
    pairs = [(u.text, u.reply) for u in tx.base_sentences(args.seed)["test"][: args.n]]
    base = engine.llm.prompt
    variants = {"bundle's prompt": {}, "no system prompt": {"system_prompt": None, "response_copy_bonus": 0.0},
                "short": {"system_prompt": SHORT, "response_copy_bonus": 0.0},
                "short + copy bonus 0.5": {"system_prompt": SHORT, "response_copy_bonus": 0.5}}
    print(f"| prompt | exact | slots kept | s per reply |\n|---|---|---|---|")
    for name, change in variants.items():
        engine.llm.prompt = dataclasses.replace(base, **change)
        r = score(engine, pairs)
        print(f"| {name} | {r['exact']} / {r['n']} | {r['slots_kept']} / {r['n']} | {r['seconds_per_reply']} |")
        for request, reply in r["examples"]:
            print(f"|   e.g. | {request!r} -> {reply!r} | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
