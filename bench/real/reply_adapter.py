"""Build stage: the LLM's reply adapter (assistant/engine/adapter.py), trained once; the LLM stays frozen.

    python -m bench.real.reply_adapter [--bundle assistant/demo] [--steps N] [--quick] [--data-dir DIR]

Trains low-rank weights on the top decoder layers of the bundle's LLM with (request, reply) pairs of
the base TRAIN split, each in the bundle's own reply prompt (``CausalLM.response_ids``), the loss on the
reply's tokens and its turn end only. Then scores replies to held-out requests (bench/replies.py: base
TEST split, from their text) with and without the copy bonus, keeps the better prompt, and writes
``<bundle>/reply_adapter/`` and the manifest's ``reply_adapter``, ``build.recipes.reply_adapter``,
``build.stage_seconds`` and ``metrics.replies``. ``python -m bench.real.build`` runs the same stage.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ADAPTER_DIR = "reply_adapter"


@dataclass(frozen=True)
class ReplyRecipe:
    rank: int = 8
    alpha: float = 16.0
    top_layers: int = 8
    kinds: tuple[str, ...] = ("q_proj", "v_proj", "o_proj", "up_proj", "down_proj")
    steps: int = 240
    batch: int = 16
    peak_lr: float = 2e-3
    warmup_steps: int = 10
    seed: int = 0


def examples(llm, pairs) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels): the reply prompt, then the reply and the turn end; labels -100 on the prompt."""
    end = llm.tokenizer.eos_token or ""
    out = []
    for request, reply in pairs:
        head = llm.response_ids(request, [])
        tail = llm.tokenizer(reply + end, add_special_tokens=False).input_ids
        out.append((head + tail, [-100] * len(head) + tail))
    return out


def _batch(items, pad_id: int):
    n = max(len(a) for a, _ in items)
    ids = torch.tensor([a + [pad_id] * (n - len(a)) for a, _ in items])
    labels = torch.tensor([b + [-100] * (n - len(b)) for _, b in items])
    mask = torch.tensor([[1] * len(a) + [0] * (n - len(a)) for a, _ in items])
    return ids, labels, mask


def train(llm, pairs, recipe: ReplyRecipe, *, log=print):
    """Attach a new adapter to ``llm.model`` (llm.reply_adapter) and train it; returns (adapter, last loss)."""
    from assistant.engine.adapter import AdapterSpec, attach, top_layer_modules

    model = llm.model
    spec = AdapterSpec(recipe.rank, recipe.alpha, top_layer_modules(model, recipe.top_layers, recipe.kinds))
    adapter = attach(model, spec, seed=recipe.seed)
    llm.reply_adapter = adapter
    params = adapter.parameters()
    for p in params:
        p.requires_grad_(True)
    data = examples(llm, pairs)
    rng = random.Random(recipe.seed)
    opt = torch.optim.AdamW(params, lr=recipe.peak_lr, weight_decay=0.0)

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay
        if step < recipe.warmup_steps:
            return recipe.peak_lr * (step + 1) / recipe.warmup_steps
        t = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
        return recipe.peak_lr * 0.5 * (1 + math.cos(math.pi * t))

    pad = llm.tokenizer.pad_token_id if llm.tokenizer.pad_token_id is not None else 0
    model.train()
    t0, loss_avg = time.perf_counter(), None
    with adapter.active(), torch.enable_grad():
        for step in range(recipe.steps):
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            ids, labels, mask = _batch([data[rng.randrange(len(data))] for _ in range(recipe.batch)], pad)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss_avg = loss.item() if loss_avg is None else 0.9 * loss_avg + 0.1 * loss.item()
            if step % 10 == 0 or step == recipe.steps - 1:
                log(f"  [reply adapter] step {step + 1}/{recipe.steps} loss {loss_avg:.3f} "
                    f"({time.perf_counter() - t0:.0f} s)")
    model.eval()
    for p in params:
        p.requires_grad_(False)
    return adapter, loss_avg


def choose_prompt(engine, pairs) -> tuple[dict, dict]:
    """Reply scores on held-out ``pairs`` with the copy bonus off and on; the engine keeps the better."""
    from bench.replies import score

    base = engine.llm.prompt
    table = {}
    for bonus in (0.0, base.response_copy_bonus or 0.5):
        engine.llm.prompt = dataclasses.replace(base, response_copy_bonus=bonus)
        table[f"copy bonus {bonus}"] = score(engine, pairs)
    best = max(table, key=lambda k: (table[k]["equivalent"], table[k]["exact"], k == "copy bonus 0.0"))
    engine.llm.prompt = dataclasses.replace(base, response_copy_bonus=float(best.rsplit(" ", 1)[1]))
    return table, {"chosen": best}


def stage(engine, bundle_dir: Path, recipe: ReplyRecipe, *, seed: int, n_eval: int, timer, log=print) -> dict:
    """Train, score and save the adapter into ``bundle_dir``; returns metrics.replies for the manifest."""
    from assistant.engine.adapter import save_adapter
    from assistant.synth import text as tx

    base = tx.base_sentences(seed)
    train_pairs = [(u.text, u.reply) for u in base["train"]]
    held_out = [(u.text, u.reply, u.domain) for u in base["test"][:n_eval]]
    from bench.replies import score

    skills, engine.skills = engine.skills, None  # the LLM's own replies: what the adapter changes
    try:
        before = timer.run("replies before the adapter", score, engine, held_out)
        adapter, loss = timer.run("train reply adapter", train, engine.llm, train_pairs, recipe, log=log)
        table, choice = timer.run("replies with the adapter", choose_prompt, engine, held_out)
    finally:
        engine.skills = skills
    served = timer.run("replies as served (skills + adapter)", score, engine, held_out)
    after = table[choice["chosen"]]
    metrics = {"n": len(held_out), "before": _brief(before), "after": _brief(after), "served": _brief(served),
               "prompts": {k: _brief(v) for k, v in table.items()}, **choice, "final_loss": round(loss, 4)}
    save_adapter(bundle_dir / ADAPTER_DIR, adapter, llm_id=engine.llm.identity, recipe=asdict(recipe),
                 metrics=metrics)
    log(f"replies: exact {before['exact']}/{before['n']} -> {after['exact']}/{after['n']}, equivalent "
        f"{before['equivalent']} -> {after['equivalent']} ({choice['chosen']})")
    return metrics


def _brief(r: dict) -> dict:
    return {k: r[k] for k in ("exact", "equivalent", "slots_kept", "n", "seconds_per_reply", "by_domain")}


def main(argv: list[str] | None = None) -> int:
    from assistant.bundle import load_bundle, save_manifest
    from assistant.config import default_data_dir
    from assistant.engine.engine import Engine
    from bench.demo.build import Timer, log

    ap = argparse.ArgumentParser(prog="python -m bench.real.reply_adapter", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=str(Path(__file__).resolve().parents[2] / "assistant" / "demo"))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--n-eval", type=int, default=100, help="held-out requests scored before and after")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a few steps and requests: checks the stage only")
    ap.add_argument("--data-dir", default=None, help="where the pretrained weights are assembled")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    recipe = ReplyRecipe(seed=args.seed)
    if args.quick:
        recipe = dataclasses.replace(recipe, steps=3, batch=2)
    if args.steps:
        recipe = dataclasses.replace(recipe, steps=args.steps)
    root = Path(args.bundle).resolve()
    bundle = load_bundle(root)
    m = bundle.manifest
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    # trained from the LLM as it is, never on top of the bundle's current adapter
    engine = Engine.from_bundle(root, device="cpu", data_dir=data_dir, reply_adapter=False)
    timer = Timer()
    metrics = stage(engine, root, recipe, seed=args.seed, n_eval=5 if args.quick else args.n_eval, timer=timer,
                    log=log)
    build = dict(m.build)
    build["recipes"] = {**build.get("recipes", {}), "reply_adapter": asdict(recipe)}
    build["stage_seconds"] = {**build.get("stage_seconds", {}), **timer.stages}
    build["reply_adapter_command"] = "python -m bench.real.reply_adapter" + (" --quick" if args.quick else "")
    save_manifest(root, dataclasses.replace(m, reply_adapter=ADAPTER_DIR, prompt=engine.llm.prompt, build=build,
                                            metrics={**m.metrics, "replies": metrics}))
    log(f"reply adapter written to {root / ADAPTER_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
