"""Embed recipe (Tiny-Align's EmbedLink idea): pull the bridge's outputs toward the LLM's own input
embeddings of the transcript, without running the LLM (cheap: bridge forward + backward only).

Targets: the LLM's input-embedding rows of the transcript's tokens (``tokenizer(text)`` without special
tokens; the end token is not spoken, so it is not a target; an empty transcript uses the end token).
They are computed once at setup, detached, in float32.

Length alignment: the bridge emits ``T_out`` positions (ctc: one per CTC segment, roughly one per
emitted character; conv: frames / 4) and the transcript has ``T_tok`` tokens; the lengths differ (BPE
tokens are several characters, and a conv bridge has a fixed rate). The target sequence ``(T_tok, H)``
is resampled to ``(T_out, H)`` by linear interpolation along time
(``F.interpolate(mode="linear", align_corners=True)``: first and last positions map to the first and
last tokens), so output position i is matched with the token at the same relative position in the
utterance. This assumes speech is spread evenly over the transcript: a monotonic, roughly linear
alignment, which holds for the short commands the assistant hears. It works for any two lengths (one
token: every position targets it).

Loss per utterance: ``MSE(out, tgt) / mean(tgt^2) + (1 - mean_position cos(out, tgt))``. The MSE is
divided by the targets' mean square so its weight does not depend on the LLM's embedding scale (Qwen's
rows are ~0.01 in size, which would make a raw MSE vanish next to the cosine term); the cosine term
matches directions, the MSE term norms. Batch loss: mean over utterances.

This objective only approximates the transcript loss (the LLM was never trained to read speech
embeddings equal to its token embeddings).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from assistant.alignment.objective import target_ids
from assistant.alignment.trainers.batches import BridgeInputs, Post
from assistant.alignment.trainers.gradient import GradientRecipe

log = logging.getLogger(__name__)


def resample(target: torch.Tensor, length: int) -> torch.Tensor:
    """(T_tok, H) -> (length, H) by linear interpolation along time."""
    if target.shape[0] == length:
        return target
    x = target.t().unsqueeze(0)  # (1, H, T_tok): interpolate works on the last dim
    return F.interpolate(x, size=length, mode="linear", align_corners=True)[0].t()


def embed_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    tgt = resample(target, out.shape[0])
    mse = ((out - tgt) ** 2).mean() / tgt.pow(2).mean().clamp_min(1e-12)
    cos = F.cosine_similarity(out, tgt, dim=-1, eps=1e-8).mean()
    return mse + (1 - cos)


class EmbedObjective:
    """(bridge, example indices) -> mean embedding-matching loss; never calls the LLM's forward."""

    def __init__(self, llm: Any, inputs: BridgeInputs, post: Post | None = None, ctc_weight: float = 0.0) -> None:
        self.inputs = inputs
        self.post = post
        self.ctc_weight = ctc_weight  # a personal CTC head's loss (no LLM either), as in backprop
        self.targets: list[torch.Tensor] = []
        with torch.no_grad():
            for text in inputs.texts:
                ids = llm.tokenizer(text, add_special_tokens=False).input_ids or target_ids(llm, "")
                self.targets.append(llm.embed_ids(ids)[0].detach().float())

    def __call__(self, module: torch.nn.Module, idx: Sequence[int]) -> torch.Tensor:
        outs = self.inputs.outputs(module, idx, self.post)
        loss = torch.stack([embed_loss(o.float(), self.targets[i].to(o.device)) for o, i in zip(outs, idx)]).mean()
        ctc = self.inputs.ctc_loss(module, idx) if self.ctc_weight > 0 else None
        return loss if ctc is None else loss + self.ctc_weight * ctc


class EmbedRecipe(GradientRecipe):
    def __init__(self, *, clip_norm: float = 1.0) -> None:
        super().__init__("embed", EmbedObjective, clip_norm=clip_norm)
