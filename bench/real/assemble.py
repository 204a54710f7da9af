"""Write the real-models bundle: only what this project trained, plus pointers to the pretrained parts.

    <bundle>/manifest.json
    <bundle>/encoder/   pretrained.json (the Whisper source), Whisper's config.json and
                        preprocessor_config.json (copies), ctc.json + ctc.safetensors (our CTC module),
                        vocab.json + tokenizer_config.json (its characters)
    <bundle>/llm/       pretrained.json (the LLM source)
    <bundle>/bridge/ctc/  the text-input ctc bridge (engine/bridge.py)
    <bundle>/reply_adapter/  the LLM's reply adapter (engine/adapter.py, trained by reply_adapter.py)
    <bundle>/regression/, <bundle>/replay/  cached generic sets for the alignment gate and replay
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from assistant.bundle import POINTER_NAME, BundleManifest, ComponentSpec, PromptFormat, save_manifest
from bench.real import reply_adapter

TRANSCRIPT_SYSTEM = ("You turn a speech recognizer's rough reading of a spoken request to a voice assistant "
                     "into the words the user said: lowercase words, numbers spelled out, no punctuation.")
# The reply prompt the reply adapter is trained in (reply_adapter.py); the build then keeps the copy bonus
# (0 or this) that answers more held-out requests right with the adapter.
REPLY_SYSTEM = "You are a voice assistant. Reply in one short sentence that says what you are doing for the user."
REPLY_COPY_BONUS = 0.5

PROMPT = PromptFormat(
    instruction=f"<|im_start|>system\n{TRANSCRIPT_SYSTEM}<|im_end|>\n<|im_start|>user\n",
    separator="<|im_end|>\n<|im_start|>assistant\n",
    speech_bos=False,
    transcript_end="<|im_end|>",
    transcript_tokens_per_s=8.0,
    response="chat",
    system_prompt=REPLY_SYSTEM,
    response_max_new_tokens=40,
    response_copy_bonus=REPLY_COPY_BONUS,
    history_turns=0,
    draft_case="lower",
)


def write_components(tmp: Path, ctc, vocab: dict[str, int], whisper_source: str, llm_source: str, data_dir,
                     recipe: dict) -> tuple[str, str]:
    """The encoder and LLM directories; returns their identities."""
    from transformers import Wav2Vec2CTCTokenizer

    from assistant.engine.whisper import CTC_WEIGHTS, save_ctc
    from assistant.pretrained.assemble import component_id, ensure, read_info

    whisper_dir = ensure(whisper_source, data_dir)
    enc = tmp / "encoder"
    save_ctc(ctc, vocab["<pad>"], enc, recipe=recipe, whisper=whisper_source)
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copyfile(whisper_dir / "encoder" / name, enc / name)
    (enc / POINTER_NAME).write_text(json.dumps({"source": whisper_source}) + "\n")
    (enc / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    Wav2Vec2CTCTokenizer(str(enc / "vocab.json"), word_delimiter_token="|").save_pretrained(enc)
    (tmp / "llm").mkdir(parents=True, exist_ok=True)
    (tmp / "llm" / POINTER_NAME).write_text(json.dumps({"source": llm_source}) + "\n")
    w_info = read_info(whisper_dir)
    h = hashlib.sha256(w_info["digest"].encode())
    h.update((enc / CTC_WEIGHTS).read_bytes())
    enc_id = f"{w_info['identity']}+ctc@{h.hexdigest()[:16]}"
    return enc_id, component_id(read_info(ensure(llm_source, data_dir)))


def write_manifest(out: Path, *, name: str, enc_id: str, llm_id: str, build: dict, metrics: dict,
                   prompt: PromptFormat, description: str) -> None:
    """``prompt``: PROMPT with what the build chose on dev (transcript decoding, LM weight, copy bonus)."""
    save_manifest(out, BundleManifest(
        name=name, description=description,
        encoder=ComponentSpec(path="encoder", id=enc_id), llm=ComponentSpec(path="llm", id=llm_id),
        prompt=prompt, bridges={"ctc": "bridge/ctc"}, default_bridge="ctc", reply_adapter=reply_adapter.ADAPTER_DIR,
        is_noise=False, build=build, metrics=metrics))
