"""Frozen causal LLM + tokenizer from a local directory, and the prompts built around the speech.

Speech prompt (transcript): ``[bos][instruction][speech embeddings][separator]`` -> greedy transcript.
Response: the transcript as the user's turn, through the tokenizer's chat template (``chat``) or the
manifest's documented plain template (``plain``), with a short history of earlier turns.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Sequence

import torch

from assistant.bundle import POINTER_NAME, PromptFormat
from assistant.engine.encoder import half_ok, pick_device
from assistant.errors import ModelFilesError


class CausalLM:
    def __init__(self, model, tokenizer, prompt: PromptFormat, *, identity: str, device: torch.device,
                 reply_adapter=None) -> None:
        self.model = model
        self.reply_adapter = reply_adapter  # engine/adapter.py ReplyAdapter, on inside replying() only
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.identity = identity
        self.device = device
        self.dim = int(model.config.hidden_size)
        self.dtype = model.get_input_embeddings().weight.dtype
        self._embed = model.get_input_embeddings()
        self.stop_ids = self._stop_ids()
        self._special_ids = set(getattr(tokenizer, "all_special_ids", []))
        self.transcript_stop_ids = set(self.stop_ids)
        if prompt.transcript_end:
            self.transcript_stop_ids |= set(self._single_token(prompt.transcript_end, "prompt.transcript_end"))
        self.response_stop_ids = set(self.stop_ids)
        if prompt.response == "plain" and prompt.plain_turn_end.strip(" "):
            ids = self.tokenizer(prompt.plain_turn_end, add_special_tokens=False).input_ids
            if len(ids) == 1:  # a one-token turn end (e.g. a newline) ends the reply too
                self.response_stop_ids.add(ids[0])
        self._instruction_ids = self._ids(prompt.instruction)
        self._separator_ids = self._ids(prompt.separator)

    @classmethod
    def load(cls, model_dir: str | Path, prompt: PromptFormat, *, identity: str,
             device: str | torch.device = "auto", data_dir: str | Path | None = None,
             reply_adapter_dir: str | Path | None = None) -> "CausalLM":
        """A transformers causal LM from ``model_dir``, or (``pretrained.json`` there) the pretrained LLM
        it names, assembled into ``data_dir`` on first use (assistant/pretrained/); with
        ``reply_adapter_dir``, the reply adapter trained for it (engine/adapter.py)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_dir = Path(model_dir)
        if (model_dir / POINTER_NAME).is_file():
            from assistant.pretrained.assemble import resolve_pointer

            model_dir = resolve_pointer(model_dir, data_dir) / "llm"
        dev = pick_device(device) if isinstance(device, str) else device
        dtype = torch.float16 if half_ok(dev) else torch.float32
        try:
            tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=dtype)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFilesError(
                f"cannot load the LLM from {model_dir}: {exc}",
                fix="check the directory holds config.json, the weights and the tokenizer files",
            ) from exc
        if prompt.response == "chat" and not getattr(tok, "chat_template", None):
            raise ModelFilesError(f"the LLM in {model_dir} has no chat template but the manifest asks for "
                                  "prompt.response = 'chat'", fix="set prompt.response to 'plain'")
        model = model.to(dev).eval().requires_grad_(False)
        adapter = None
        if reply_adapter_dir is not None:
            from assistant.engine.adapter import load_adapter

            adapter = load_adapter(reply_adapter_dir, model, llm_id=identity)
        return cls(model, tok, prompt, identity=identity, device=dev, reply_adapter=adapter)

    def replying(self) -> contextlib.AbstractContextManager:
        """Inside: the LLM with its reply adapter, for this thread (the LLM as it is when it has none)."""
        return self.reply_adapter.active() if self.reply_adapter is not None else contextlib.nullcontext()

    def _single_token(self, text: str, key: str) -> list[int]:
        tid = self.tokenizer.convert_tokens_to_ids(text)
        if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
            return [tid]
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise ModelFilesError(f"manifest {key} {text!r} is not one token of this tokenizer")
        return ids

    def _stop_ids(self) -> set[int]:
        ids = set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        gen = getattr(self.model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None) if gen is not None else None
        if isinstance(eos, int):
            ids.add(eos)
        elif isinstance(eos, (list, tuple)):
            ids.update(int(e) for e in eos)
        return ids

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids if text else []

    def embed_ids(self, ids: Sequence[int]) -> torch.Tensor:
        return self._embed(torch.tensor([list(ids)], device=self.device, dtype=torch.long))

    def speech_prefix(self, speech: torch.Tensor) -> torch.Tensor:
        """(positions, hidden) bridge output -> (1, P, hidden) prompt embeddings."""
        head = list(self._instruction_ids)
        if self.prompt.speech_bos and self.tokenizer.bos_token_id is not None:
            head = [self.tokenizer.bos_token_id, *head]
        parts = []
        if head:
            parts.append(self.embed_ids(head)[0])
        parts.append(speech.to(self.dtype))
        if self._separator_ids:
            parts.append(self.embed_ids(self._separator_ids)[0])
        return torch.cat(parts, 0).unsqueeze(0)

    def transcript_budget(self, duration_s: float) -> int:
        return math.ceil(duration_s * self.prompt.transcript_tokens_per_s) + 8

    def text_ids(self, text: str) -> list[int]:
        """A CTC reading as the LLM's tokens (the prompt's draft case), at least one token: an empty
        reading still gives the LLM a speech slot to read."""
        text = text.lower() if self.prompt.draft_case == "lower" else text
        return self._ids(" ".join(text.split()) or " ")

    def draft_variants(self, text: str, *, prefix: str = "") -> list[list[int]]:
        """Tokenizations of a CTC draft, without and with a leading space (BPE vocabularies mark word
        starts with the space); decoding keeps the one that starts with the LLM's first token.
        ``prefix``: the LLM's own words for the start of the utterance (a draft hint), taken as they are;
        the prompt's draft case applies to the CTC text only."""
        if self.prompt.draft_case == "lower":
            text = text.lower()
        elif self.prompt.draft_case == "upper":
            text = text.upper()
        text = f"{prefix} {text}".strip() if prefix else text
        if not text:
            return []
        return [self._ids(text), self._ids(" " + text)]

    def response_ids(self, transcript: str, history: Sequence[tuple[str, str]]) -> list[int]:
        p = self.prompt
        if p.response == "chat":
            messages = [{"role": "system", "content": p.system_prompt}] if p.system_prompt else []
            for user, reply in history:
                messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
            messages.append({"role": "user", "content": transcript})
            out = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            if isinstance(out, dict) or hasattr(out, "input_ids"):  # BatchEncoding in newer transformers
                out = out["input_ids"]
            return list(out)
        text = "".join(p.plain_template.format(transcript=u) + " " + r + p.plain_turn_end for u, r in history)
        text += p.plain_template.format(transcript=transcript)
        return self.tokenizer(text, add_special_tokens=True).input_ids

    def token_text(self, token_id: int) -> str:
        """One token's text as it reads inside a transcript: a BPE/SentencePiece word start keeps its
        leading space (decoding a lone token drops it), special tokens read as nothing."""
        if token_id in self._special_ids:
            return ""
        piece = self.tokenizer.convert_ids_to_tokens(int(token_id)) or ""
        text = self.tokenizer.decode([int(token_id)], skip_special_tokens=True)
        if piece[:1] in ("\u0120", "\u2581") and not text.startswith(" "):
            text = " " + text.lstrip()
        return text

    def decode_text(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()
