"""Named model sets ("presets") that ``assistant models pull NAME`` downloads into a bundle
(:mod:`assistant.hub` does the download), and the listing of the bundles a data dir holds.

A preset names a speech encoder (with a CTC head, so it can draft transcripts) and an
instruct LLM on the Hugging Face Hub, plus the prompt format the pair is used with. Pulling
one writes an ordinary bundle (see :mod:`assistant.bundle`) to ``<data_dir>/bundles/<name>``:

    <data_dir>/bundles/<name>/manifest.json
    <data_dir>/bundles/<name>/encoder/   snapshot of the encoder repo (weights, config, preprocessor)
    <data_dir>/bundles/<name>/llm/       snapshot of the LLM repo (weights, config, tokenizer, chat template)

A pulled bundle serves at once: every preset's encoder has a CTC head (English characters), so the
pull writes a text-input ctc bridge (``write_zero_shot_bridge``, engine/bridge.py), which has no trained
parameters: the transcript is the encoder's own CTC reading and the LLM writes the reply. Personalized
alignment then trains the user's bridge on top of it, as on any bundle.

No torch / transformers / huggingface_hub import at module level: the CLI imports this module
to print ``assistant models list`` quickly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.bundle import (
    MANIFEST_NAME,
    PromptFormat,
    load_bundle,
)
from assistant.config import demo_bundle_dir
from assistant.errors import ModelFilesError

DEFAULT_PRESET = "wav2vec2-base-qwen2.5-0.5b"
PARTIAL_SUFFIX = ".partial"  # a pull in progress (assistant/hub.py): never listed as a bundle
OLD_SUFFIX = ".old"  # the bundle a finished pull is replacing, for the instant of the swap

NOTE_NO_BRIDGE = "no trained bridge yet: run personalized alignment"
NOTE_NOISE = "random weights: output is noise"
NOTE_UNREADABLE = "unreadable manifest"

# Weights: safetensors are preferred. ``pull`` looks at the repo's file list and downloads
# ``*.safetensors`` when the repo has any, otherwise the PyTorch pickles (``pytorch_model*.bin``);
# when the listing cannot be read both patterns are used. The loaders (transformers'
# from_pretrained) read model.safetensors first when both exist.
SAFETENSORS_PATTERNS = ("*.safetensors", "*.safetensors.index.json")
PYTORCH_BIN_PATTERNS = ("pytorch_model*.bin", "pytorch_model.bin.index.json")
WEIGHT_PATTERNS = SAFETENSORS_PATTERNS + PYTORCH_BIN_PATTERNS

# Everything besides weights that from_pretrained needs for models, tokenizers, feature
# extractors and chat templates. No TF/Flax/ONNX weights, READMEs or training leftovers.
ENCODER_FILE_PATTERNS = (
    "config.json",
    "preprocessor_config.json",
    "feature_extractor_config.json",
    "tokenizer_config.json",
    "vocab.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
LLM_FILE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "chat_template.jinja",
)


def allow_patterns(component: str, repo_files: Iterable[str] | None = None) -> list[str]:
    """``snapshot_download`` allow patterns for ``component`` ("encoder" or "llm").

    With ``repo_files`` (the repo's file names) only one weight format is picked: safetensors
    when the repo has any, else ``pytorch_model*.bin``. Without it both weight patterns are
    returned (safetensors is what gets loaded when both end up on disk).
    """
    if component == "encoder":
        files = list(ENCODER_FILE_PATTERNS)
    elif component == "llm":
        files = list(LLM_FILE_PATTERNS)
    else:
        raise ValueError(f"unknown component {component!r}; allowed: 'encoder', 'llm'")
    if repo_files is None:
        return files + list(WEIGHT_PATTERNS)
    names = list(repo_files)
    if any(n.endswith(".safetensors") for n in names):
        return files + list(SAFETENSORS_PATTERNS)
    return files + list(PYTORCH_BIN_PATTERNS)


# Speech prompt for instruct LLMs: the transcript is drafted after a plain-text instruction and
# the speech embeddings; the reply uses the tokenizer's chat template. Qwen has no bos token.
# CTC-fine-tuned wav2vec2/HuBERT spell in upper case, so their drafts and readings are lower-cased.
# The transcript is the CTC reading (transcript_source "ctc"): the bridge pull writes has nothing the
# LLM was trained to read, and a reading rewritten by an LLM that never saw the speech only drifts.
_QWEN_PROMPT = PromptFormat(
    instruction="Transcribe the speech.",
    separator="\nTranscript:",
    speech_bos=False,
    transcript_end=None,
    transcript_tokens_per_s=5.0,
    response="chat",
    system_prompt="You are a helpful voice assistant. Answer in one or two short sentences.",
    response_max_new_tokens=64,
    history_turns=3,
    draft_case="lower",
    transcript_source="ctc",
)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    encoder_repo: str
    encoder_revision: str
    llm_repo: str
    llm_revision: str
    prompt: PromptFormat
    approx_download_mb: int
    notes: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="wav2vec2-base-qwen2.5-0.5b",
            description="wav2vec2-base CTC (LibriSpeech 960h) + Qwen2.5-0.5B-Instruct; default, fits a Jetson Orin Nano",
            encoder_repo="facebook/wav2vec2-base-960h",
            encoder_revision="main",
            llm_repo="Qwen/Qwen2.5-0.5B-Instruct",
            llm_revision="main",
            prompt=_QWEN_PROMPT,
            approx_download_mb=1400,  # encoder ~380 MB safetensors, LLM ~990 MB bf16 + ~10 MB tokenizer
            notes="95M-parameter encoder (768-dim, 50 frames/s); English read speech; CTC drafts upper case",
        ),
        Preset(
            name="hubert-large-qwen2.5-0.5b",
            description="HuBERT-large CTC (LibriSpeech 960h) + Qwen2.5-0.5B-Instruct; more robust, slower encoder",
            encoder_repo="facebook/hubert-large-ls960-ft",
            encoder_revision="main",
            llm_repo="Qwen/Qwen2.5-0.5B-Instruct",
            llm_revision="main",
            prompt=_QWEN_PROMPT,
            approx_download_mb=2300,  # encoder ~1.26 GB fp32 (pytorch_model.bin), LLM ~1 GB
            notes="316M-parameter encoder (1024-dim, 50 frames/s); English read speech; CTC drafts upper case",
        ),
    )
}


ZERO_SHOT_BRIDGE = "bridge/ctc"


def write_zero_shot_bridge(root: Path, encoder_id: str, llm_id: str) -> None:
    """The text-input ctc bridge of a pulled bundle: it needs the encoder's CTC head and nothing trained."""
    def config(label: str) -> dict[str, Any]:
        try:
            data = json.loads((root / label / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelFilesError(f"{root / label / 'config.json'} is unreadable: {exc}") from exc
        return data if isinstance(data, dict) else {}

    enc, llm = config("encoder"), config("llm")
    if not any(str(a).endswith("ForCTC") for a in enc.get("architectures") or []):
        raise ModelFilesError(f"the pulled encoder in {root / 'encoder'} has no CTC head "
                              f"(architectures {enc.get('architectures')}): no bridge can serve it untrained",
                              fix="pick a preset whose encoder is fine-tuned for CTC")
    from assistant.engine.checkpoint import new_bridge, save_bridge

    bridge = new_bridge("ctc", encoder_dim=int(enc.get("hidden_size", 1)), llm_dim=int(llm.get("hidden_size", 1)),
                        encoder_id=encoder_id, llm_id=llm_id, hidden_dim=0,
                        ctc_blank_id=int(enc.get("pad_token_id") or 0), version="zero-shot-ctc", text_input=True)
    save_bridge(bridge, root / ZERO_SHOT_BRIDGE,
                training={"note": "text input: no trained parameters; the encoder's own CTC head reads"})


# --------------------------------------------------------------------------- list


def _bundle_row(name: str, kind: str, path: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "kind": kind, "path": str(path), "pulled": True, "bridges": [], "note": ""}
    try:
        bundle = load_bundle(path)
    except Exception as exc:  # noqa: BLE001 - a broken manifest must not break the listing
        reason = str(exc) if isinstance(exc, ModelFilesError) else f"{type(exc).__name__}: {exc}"
        row["note"] = f"{NOTE_UNREADABLE}: {reason}"
        return row
    m = bundle.manifest
    row["bridges"] = sorted(m.bridges)
    notes = []
    if m.is_noise:
        notes.append(NOTE_NOISE)
    if not m.bridges:
        notes.append(NOTE_NO_BRIDGE)
    elif m.default_bridge:
        notes.append(f"serves with its {m.default_bridge} bridge")
    from assistant.pretrained.sources import pointer_note

    pretrained = [n for n in (pointer_note(bundle.encoder_dir), pointer_note(bundle.llm_dir)) if n]
    if pretrained:
        notes.append("pretrained: " + ", ".join(pretrained))
    if kind != "preset" and m.description:
        notes.append(m.description)
    row["note"] = "; ".join(notes)
    return row


def list_bundles(data_dir: Path) -> list[dict[str, Any]]:
    """Rows for ``assistant models list``: presets (pulled or not), local bundles, the demo bundle.

    Each row: ``name``, ``kind`` ("preset" | "bundle" | "demo"), ``path`` (str or None),
    ``pulled`` (bool), ``bridges`` (kinds), ``note``. Never raises for a broken bundle.
    """
    bundles = Path(data_dir).expanduser() / "bundles"
    rows: list[dict[str, Any]] = []
    for preset in PRESETS.values():
        path = bundles / preset.name
        if (path / MANIFEST_NAME).is_file():
            rows.append(_bundle_row(preset.name, "preset", path))
        else:
            default = " (default)" if preset.name == DEFAULT_PRESET else ""
            rows.append(
                {
                    "name": preset.name,
                    "kind": "preset",
                    "path": None,
                    "pulled": False,
                    "bridges": [],
                    "note": f"not pulled{default}: assistant models pull {preset.name} "
                    f"(~{preset.approx_download_mb} MB)",
                }
            )
    try:
        entries = sorted(bundles.iterdir()) if bundles.is_dir() else []
    except OSError:
        entries = []
    for entry in entries:
        if entry.name in PRESETS or entry.name.endswith((PARTIAL_SUFFIX, OLD_SUFFIX)):
            continue
        if entry.is_dir() and (entry / MANIFEST_NAME).is_file():
            rows.append(_bundle_row(entry.name, "bundle", entry))
    demo = demo_bundle_dir()
    if (demo / MANIFEST_NAME).is_file():
        name = "demo"
        try:
            name = str(json.loads((demo / MANIFEST_NAME).read_text(encoding="utf-8")).get("name") or "demo")
        except Exception:  # noqa: BLE001 - _bundle_row reports the problem
            pass
        rows.append(_bundle_row(name, "demo", demo))
    return rows


def format_bundle_table(rows: Iterable[dict[str, Any]]) -> str:
    """Plain aligned text table of ``list_bundles`` rows (NOTE last, unpadded)."""
    header = ("NAME", "KIND", "PULLED", "BRIDGES", "PATH", "NOTE")
    lines = [header] + [
        (
            str(r.get("name", "")),
            str(r.get("kind", "")),
            "yes" if r.get("pulled") else "no",
            ",".join(r.get("bridges") or []) or "-",
            str(r.get("path") or "-"),
            str(r.get("note") or ""),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        ("  ".join(cell.ljust(w) for cell, w in zip(line[:-1], widths)) + "  " + line[-1]).rstrip() for line in lines
    )
