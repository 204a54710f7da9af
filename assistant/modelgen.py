"""Model sets built from configs, without any download.

- ``build_bundle(dir, shape="tiny")``: a tiny random encoder (HubertForCTC) + LLM (Llama) + conv and ctc
  bridges, for tests and development. Its output is noise, and its manifest says so.
- ``shape="preset"``: random weights with the shapes of the real preset (HuBERT-base + Qwen2.5-0.5B), for
  speed and memory measurements only.
- ``char_tokenizer``: a character-level LLM tokenizer (transformers-loadable), also used by models trained
  on the synthetic corpus.
"""

from __future__ import annotations

import json
import logging
import string
from pathlib import Path

import torch

from assistant.bundle import BundleManifest, ComponentSpec, PromptFormat, fingerprint, save_manifest
from assistant.units import TARGET_RATE_HZ

log = logging.getLogger(__name__)

LLM_SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>", "<sep>", "<reply>"]
LLM_CHARS = list(string.ascii_lowercase + string.ascii_uppercase + string.digits + " .,?!'\":;-()%/&+\n")
CTC_CHARS = list(string.ascii_lowercase + "'")
SHAPES = ("tiny", "preset")


def char_tokenizer(chars: list[str] | None = None, *, vocab_size: int | None = None, chat_template: str | None = None):
    """A transformers tokenizer with one token per character (plus specials).

    ``vocab_size`` pads the vocabulary with filler tokens (``<fill_N>``) so a model with a large
    embedding table (preset-shaped) never emits an id the tokenizer cannot read.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokens = LLM_SPECIALS + list(chars or LLM_CHARS)
    if vocab_size is not None:
        tokens += [f"<fill_{i}>" for i in range(vocab_size - len(tokens))]
    vocab = {t: i for i, t in enumerate(tokens)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                  unk_token="<unk>", additional_special_tokens=["<sep>", "<reply>"])
    if chat_template:
        tok.chat_template = chat_template
    return tok


# A minimal chat template (for testing the chat path with a tiny model).
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def ctc_processor_files(directory: Path, chars: list[str] | None = None) -> int:
    """Write a wav2vec2-style CTC vocabulary + feature extractor; returns the vocabulary size."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    for c in chars or CTC_CHARS:
        vocab.setdefault(c, len(vocab))
    directory.mkdir(parents=True, exist_ok=True)
    vpath = directory / "vocab.json"
    vpath.write_text(json.dumps(vocab), encoding="utf-8")
    Wav2Vec2CTCTokenizer(str(vpath), word_delimiter_token="|").save_pretrained(directory)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=TARGET_RATE_HZ, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(directory)
    return len(vocab)


def _encoder_config(shape: str, vocab_size: int):
    from transformers import HubertConfig

    if shape == "tiny":
        return HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                            vocab_size=vocab_size, pad_token_id=0, architectures=["HubertForCTC"])
    # HuBERT-base (facebook/hubert-base-ls960) shapes with a CTC head
    return HubertConfig(vocab_size=vocab_size, pad_token_id=0, architectures=["HubertForCTC"])


def _llm_config(shape: str, tok):
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if shape == "tiny":
        from transformers import LlamaConfig

        return LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                           tie_word_embeddings=True, architectures=["LlamaForCausalLM"], **ids,
                           initializer_range=0.5)  # wide init: varied noise, not one character repeated
    from transformers import Qwen2Config

    # Qwen2.5-0.5B-Instruct shapes
    return Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                       rope_theta=1000000.0, tie_word_embeddings=True, architectures=["Qwen2ForCausalLM"], **ids)


def build_bundle(directory: str | Path, *, shape: str = "tiny", chat: bool = False, seed: int = 0) -> Path:
    """Build a random-weight bundle in ``directory`` (created; must be empty or absent)."""
    from transformers import AutoModelForCausalLM, AutoModelForCTC

    from assistant.engine.checkpoint import new_bridge, save_bridge

    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; allowed: {', '.join(SHAPES)}")
    root = Path(directory).expanduser().resolve()
    if root.exists() and any(root.iterdir()):
        from assistant.errors import ModelFilesError

        raise ModelFilesError(f"{root} exists and is not empty", fix="give a new or empty directory")
    torch.manual_seed(seed)
    enc_dir, llm_dir = root / "encoder", root / "llm"
    ctc_vocab = ctc_processor_files(enc_dir)
    encoder = AutoModelForCTC.from_config(_encoder_config(shape, ctc_vocab))
    encoder.save_pretrained(enc_dir)
    tok = char_tokenizer(vocab_size=151936 if shape == "preset" else None,
                         chat_template=TINY_CHAT_TEMPLATE if chat else None)
    llm_cfg = _llm_config(shape, tok)
    llm = AutoModelForCausalLM.from_config(llm_cfg)
    llm.save_pretrained(llm_dir)
    tok.save_pretrained(llm_dir)
    enc_id = fingerprint(enc_dir, f"random-{shape}-hubert")
    llm_id = fingerprint(llm_dir, f"random-{shape}-{llm_cfg.model_type}")
    bridges = {}
    for kind in ("conv", "ctc"):
        hidden = (64 if kind == "conv" else 0) if shape == "tiny" else (512 if kind == "conv" else 0)
        b = new_bridge(kind, encoder_dim=encoder.config.hidden_size, llm_dim=llm_cfg.hidden_size,
                       encoder_id=enc_id, llm_id=llm_id, hidden_dim=hidden, ctc_blank_id=encoder.config.pad_token_id,
                       version="random-0", seed=seed + (1 if kind == "ctc" else 2))
        save_bridge(b, root / "bridge" / kind, metrics={"note": "random init, never trained"})
        bridges[kind] = f"bridge/{kind}"
    # Char-level transcripts run ~15 tokens/s of speech; preset-shaped mimics a subword LLM (~4/s).
    prompt = PromptFormat(
        separator="<sep>" if shape == "tiny" else "\nTranscript:",
        speech_bos=True,
        transcript_tokens_per_s=15.0 if shape == "tiny" else 4.0,
        response="chat" if chat else "plain",
        response_max_new_tokens=32 if shape == "tiny" else 32,
    )
    manifest = BundleManifest(
        name=f"random-{shape}" + ("-chat" if chat else ""),
        description=("random weights built from configs: transcripts and responses are noise; for tests, "
                     "development and speed/memory measurements"),
        encoder=ComponentSpec(path="encoder", id=enc_id),
        llm=ComponentSpec(path="llm", id=llm_id),
        prompt=prompt,
        bridges=bridges,
        default_bridge="conv",
        is_noise=True,
        build={"builder": "assistant.modelgen.build_bundle", "shape": shape, "chat": chat, "seed": seed},
    )
    save_manifest(root, manifest)
    log.info("built %s bundle in %s", shape, root)
    return root
