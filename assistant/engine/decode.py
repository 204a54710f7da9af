"""Greedy decoding with a KV cache, optionally checking a draft (speculative decoding).

One loop serves both. The next greedy token ``nxt`` is always known before a pass; each pass feeds
``[nxt] + proposal``, where the proposal is the continuation of the draft after the newest output
tokens (an n-gram lookup into the draft, so one disagreement does not end the speculation). The
pass's logits say which proposed tokens greedy decoding would have produced; the agreeing prefix is
kept, the KV cache is cropped to it, and the token after it becomes ``nxt``. With no draft every
proposal is empty and this is plain greedy decoding, token by token.

Proposals only ride along in a pass that had to happen anyway, so a draft never costs an extra pass,
and the output is exactly plain greedy's (up to float rounding between batched and single-token
passes: fp32 on CPU gives identical argmaxes in practice; the tests check it on many inputs).

A ``chooser`` (``choose(logits) -> token``, ``accept(token)``; joint.py's CTC/LLM fusion) replaces the
argmax: the draft is then checked against the chooser's picks, position by position, so the output is
exactly what the chooser would pick token by token.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Protocol, Sequence

import torch

MAX_NGRAM = 3
MAX_PROPOSAL = 48
FIRST_PROPOSAL = 16  # proposal length adapts: doubles while fully accepted, shrinks after a miss
ONE_TOKEN_WINDOW = 3


@dataclass(frozen=True)
class DecodeResult:
    token_ids: list[int]
    passes: int  # LLM forward passes, the prefill included
    stopped_by: str  # "stop" (a stop token), "max_tokens", or "ctc" (the transcript is the CTC reading: no pass)
    draft_tokens: int = 0
    accepted_tokens: int = 0  # output tokens that came from the draft


class Chooser(Protocol):
    def choose(self, logits: torch.Tensor) -> int: ...

    def accept(self, token: int) -> None: ...


def _propose(draft: Sequence[int], out: Sequence[int], anchor: int, limit: int) -> tuple[list[int], int]:
    """Continuation of ``draft`` where the newest output tokens are found in it (``[]`` if nowhere).

    ``anchor`` is the draft position just after the last accepted draft token; the search never goes
    back before it, so a repeated word cannot send the proposal back to an earlier spot. A one-token
    match counts only just after the anchor (a small insertion or deletion in the draft): with
    character vocabularies one token matches almost anywhere and would propose garbage.
    """
    if not draft or limit <= 0:
        return [], anchor
    for n in range(min(MAX_NGRAM, len(out)), 0, -1):
        tail = list(out[-n:])
        lo = max(0, anchor - n + 1)
        hi = len(draft) - n + 1 if n > 1 else min(len(draft), anchor + ONE_TOKEN_WINDOW)
        for p in range(lo, hi):
            if list(draft[p : p + n]) == tail:
                start = p + n
                return list(draft[start : start + limit]), start
    return [], anchor


@functools.lru_cache(maxsize=None)
def _cache_kwarg(model_class: type) -> str:
    """The forward keyword that takes the KV cache: ``cache`` in newer transformers (``past_key_values``
    is deprecated there and warns on every call), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def _verify(rows: torch.Tensor, proposal: Sequence[int], out: list[int], pick, chooser: Chooser | None,
            stop_ids: set[int], max_new_tokens: int) -> tuple[int, int]:
    """Check ``proposal`` against one pass's logits ``rows`` (rows[i]: the logits after proposal[:i]).

    Appends the agreeing prefix to ``out`` (and to the chooser's prefix); returns (tokens accepted, the
    pick after them). With a chooser the pick depends on the prefix, so positions are checked in order.
    """
    k = 0
    if chooser is None:
        preds = rows.argmax(-1).tolist()
        while k < len(proposal) and proposal[k] == preds[k] and preds[k] not in stop_ids \
                and len(out) < max_new_tokens:
            out.append(proposal[k])
            k += 1
        return k, preds[k]
    choice = pick(rows[0])
    while k < len(proposal) and proposal[k] == choice and choice not in stop_ids and len(out) < max_new_tokens:
        out.append(choice)
        chooser.accept(choice)
        k += 1
        choice = pick(rows[k]) if k < rows.shape[0] else choice
    return k, choice


@torch.inference_mode()
def decode(model, prefix_embeds: torch.Tensor, *, max_new_tokens: int, stop_ids: set[int],
           draft: Sequence[int] | None = None, draft_variants: Sequence[Sequence[int]] = (),
           chooser: Chooser | None = None, first_proposal: int = 0) -> DecodeResult:
    """Greedy continuation of ``prefix_embeds`` (1, positions, hidden) with a transformers causal LM.

    ``draft_variants``: alternative tokenizations of one draft (e.g. with and without a leading space);
    the one that starts with the LLM's first greedy token is used, else the first.
    ``first_proposal``: draft tokens that ride along in the prefill itself (the first variant's), for a
    draft trusted to agree (a draft hint in the LLM's own words): when it does, the prefill alone checks
    them and one pass is saved; when it does not, the pass costs what the prefill cost anyway, plus them.
    """
    from transformers import DynamicCache

    cache = DynamicCache()
    kv = {_cache_kwarg(type(model)): cache, "use_cache": True}
    pick = chooser.choose if chooser is not None else (lambda row: int(row.argmax()))
    variants = [list(v) for v in draft_variants if v] or ([list(draft)] if draft else [[]])
    out: list[int] = []
    accepted_total = 0
    anchor = 0
    early = variants[0][: min(first_proposal, MAX_PROPOSAL, max_new_tokens)]
    device = prefix_embeds.device
    if early:
        embeds = torch.cat([prefix_embeds, model.get_input_embeddings()(torch.tensor([early], device=device))
                            .to(prefix_embeds.dtype)], 1)
        # Only the rows that predict the proposed tokens and the one after them are needed.
        rows = model(inputs_embeds=embeds, **kv,
                     logits_to_keep=len(early) + 1).logits[0]
        k, nxt = _verify(rows, early, out, pick, chooser, stop_ids, max_new_tokens)
        if k < len(early):
            cache.crop(-(len(early) - k))
        # nothing accepted: the LLM may start like another variant (a leading space), as below
        draft = variants[0] if k else next((v for v in variants if v and v[0] == nxt), variants[0])
        accepted_total = anchor = k
        if len(out) >= max_new_tokens:
            return DecodeResult(out, 1, "max_tokens", len(draft), accepted_total)
    else:
        # Only the last position's logits are needed after the prefill (a 150k vocabulary makes the rest costly).
        logits = model(inputs_embeds=prefix_embeds, **kv, logits_to_keep=1).logits
        nxt = pick(logits[0, -1])
        draft = next((v for v in variants if v and v[0] == nxt), variants[0])
    passes = 1
    span = FIRST_PROPOSAL
    while True:
        if nxt in stop_ids:
            return DecodeResult(out, passes, "stop", len(draft), accepted_total)
        out.append(nxt)
        if chooser is not None:
            chooser.accept(nxt)
        if len(out) >= max_new_tokens:
            return DecodeResult(out, passes, "max_tokens", len(draft), accepted_total)
        proposal, start = _propose(draft, out, anchor, min(span, max_new_tokens - len(out)))
        ids = torch.tensor([[nxt, *proposal]], device=device)
        logits = model(input_ids=ids, **kv).logits[0]
        passes += 1
        k, choice = _verify(logits, proposal, out, pick, chooser, stop_ids, max_new_tokens)
        if proposal:
            accepted_total += k
            anchor = start + k if k else anchor
            # Long proposals cost compute in every pass: grow them only while the draft keeps agreeing.
            span = min(MAX_PROPOSAL, span * 2) if k == len(proposal) else max(2, k + 1)
            if k < len(proposal):
                # A negative count removes tokens in every transformers version (4.x took an absolute
                # length, 5.x only the negative form).
                cache.crop(-(len(proposal) - k))
        if len(out) >= max_new_tokens:
            return DecodeResult(out, passes, "max_tokens", len(draft), accepted_total)
        nxt = choice
