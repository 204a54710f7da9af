"""Teacher-forced transcript loss through the frozen LLM (only the bridge gets gradients).

Each example is laid out exactly as at inference (see ``CausalLM.speech_prefix``):
``[bos][instruction][speech][separator] transcript [end]`` and the loss is the cross-entropy of the
transcript tokens and the end token only. Sequences are right-padded with an attention mask.
"""

from __future__ import annotations

from typing import Sequence

import torch

from assistant.engine.llm import CausalLM


def target_ids(llm: CausalLM, text: str) -> list[int]:
    """Transcript tokens + the token that ends a transcript (what decoding stops on)."""
    end = llm.prompt.transcript_end
    end_id = llm.tokenizer.convert_tokens_to_ids(end) if end else llm.tokenizer.eos_token_id
    return llm.tokenizer(text, add_special_tokens=False).input_ids + [int(end_id)]


def speech_batch(llm: CausalLM, speech: Sequence[torch.Tensor], targets: Sequence[Sequence[int]]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> inputs_embeds (B, L, H), attention_mask (B, L), labels (B, L) with -100 outside targets."""
    rows, labels = [], []
    for sp, tgt in zip(speech, targets):
        prefix = llm.speech_prefix(sp)[0]  # (P, H): bos/instruction + speech + separator
        tgt_t = torch.tensor(list(tgt), device=prefix.device)
        rows.append(torch.cat([prefix, llm._embed(tgt_t).to(prefix.dtype)], 0))
        labels.append(torch.cat([torch.full((prefix.shape[0],), -100, device=prefix.device), tgt_t]))
    length = max(r.shape[0] for r in rows)
    hidden = rows[0].shape[1]
    embeds = rows[0].new_zeros(len(rows), length, hidden)
    mask = torch.zeros(len(rows), length, dtype=torch.long, device=embeds.device)
    lab = torch.full((len(rows), length), -100, dtype=torch.long, device=embeds.device)
    for i, (r, lab_i) in enumerate(zip(rows, labels)):
        embeds[i, : r.shape[0]] = r
        mask[i, : r.shape[0]] = 1
        lab[i, : lab_i.shape[0]] = lab_i
    return embeds, mask, lab


def transcript_loss(llm: CausalLM, speech: Sequence[torch.Tensor], targets: Sequence[Sequence[int]]) -> torch.Tensor:
    """Mean token cross-entropy of the transcripts given the speech prompts (gradients reach ``speech``).

    The output projection runs only at the positions that predict a transcript token: with a large
    vocabulary (Qwen: 151,936) logits for every prompt position would dominate training memory.
    """
    embeds, mask, labels = speech_batch(llm, speech, targets)
    model = llm.model
    base = getattr(model, model.base_model_prefix, None)
    head = model.get_output_embeddings()
    if base is None or head is None:  # unusual architectures: the model's own loss
        return model(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
    hidden = base(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    shifted = labels[:, 1:]
    pick = shifted != -100  # position t predicts token t+1
    logits = head(hidden[:, :-1][pick]).float()
    return torch.nn.functional.cross_entropy(logits, shifted[pick])
