"""Bridge checkpoints: ``bridge.safetensors`` + ``bridge.json`` in one directory.

The JSON describes everything needed to rebuild the module (kind, dims, blank id), the encoder and
LLM identities it was trained for, its version and parent, training metrics, creation time, and the
sha256 of the weights file (a corrupt or half-written checkpoint is refused). Never a pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from assistant.engine.bridge import BRIDGE_KINDS, build_bridge
from assistant.errors import BridgeMismatchError, ModelFilesError

WEIGHTS_NAME = "bridge.safetensors"
CONFIG_NAME = "bridge.json"
FORMAT = "assistant-bridge"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class BridgeConfig:
    kind: str
    encoder_dim: int
    llm_dim: int
    hidden_dim: int
    encoder_id: str
    llm_id: str
    ctc_blank_id: int | None = None
    ctc_vocab: int = 0  # > 0: a ctc bridge with a label table of this many CTC labels
    adapter_dim: int = 0  # > 0: a personal residual adapter on the encoder frames (ctc bridges)
    adapter_kernel: int = 1  # frames the adapter sees around each frame (1: per frame; odd)
    adapter_dropout: float = 0.0  # dropout on the adapter's hidden units while training
    head_vocab: int = 0  # > 0: the bridge owns a CTC head of this many labels (ctc bridges)
    # the head and adapter serve only utterances in the user's voice (centroids in the weights file)
    voice_routing: bool = False
    input_norm: bool = True
    # a ctc bridge that hands the LLM its own token embeddings of the CTC reading (bridge.py)
    text_input: bool = False
    # the user's own words (names, places) that joint decoding favours, and the bonus per character
    # (engine/lexicon.py); set by personalization from the user's labels
    lexicon: tuple[str, ...] = ()
    lexicon_bonus: float = 0.0
    # after decoding, spans of the transcript that the CTC head hears better as a lexicon word (by more
    # than the margin, in nats) are replaced by it (engine/spotting.py)
    lexicon_spotting: bool = False
    lexicon_spot_margin: float = 0.0
    version: str = "base"
    parent_version: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    sha256: str = ""
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.kind not in BRIDGE_KINDS:
            raise ModelFilesError(f"bridge kind {self.kind!r} is unknown; allowed: {', '.join(BRIDGE_KINDS)}")
        if not isinstance(self.lexicon, tuple):  # JSON gives a list
            object.__setattr__(self, "lexicon", tuple(str(w) for w in self.lexicon))
        if self.lexicon_bonus < 0:
            raise ModelFilesError(f"bridge lexicon_bonus {self.lexicon_bonus} is negative; it must be >= 0")


@dataclass
class LoadedBridge:
    """A bridge module ready for inference, with the JSON that describes it."""

    module: torch.nn.Module
    config: BridgeConfig

    @property
    def version(self) -> str:
        return self.config.version

    @property
    def kind(self) -> str:
        return self.config.kind


def new_bridge(kind: str, *, encoder_dim: int, llm_dim: int, encoder_id: str, llm_id: str,
               hidden_dim: int | None = None, ctc_blank_id: int | None = None,
               version: str = "base", seed: int | None = None, ctc_vocab: int = 0,
               text_input: bool = False) -> LoadedBridge:
    """A freshly initialised bridge (for training, or for random-weight test bundles)."""
    if hidden_dim is None:
        hidden_dim = 512 if kind == "conv" else 0
    cfg = BridgeConfig(kind=kind, encoder_dim=encoder_dim, llm_dim=llm_dim, hidden_dim=hidden_dim,
                       encoder_id=encoder_id, llm_id=llm_id, ctc_blank_id=ctc_blank_id, version=version,
                       ctc_vocab=ctc_vocab if kind == "ctc" else 0, text_input=text_input)
    if seed is not None:
        torch.manual_seed(seed)
    module = build_bridge(kind, encoder_dim=encoder_dim, llm_dim=llm_dim, hidden_dim=hidden_dim,
                          blank_id=ctc_blank_id, input_norm=cfg.input_norm, ctc_vocab=cfg.ctc_vocab,
                          text_input=text_input)
    return LoadedBridge(module=module.eval(), config=cfg)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_write(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_bridge(bridge: LoadedBridge, directory: str | os.PathLike[str], **changes: Any) -> BridgeConfig:
    """Write weights then JSON (with the weights' sha256), both fsynced. ``changes`` update the config."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in bridge.module.state_dict().items()}
    wpath = directory / WEIGHTS_NAME
    save_file(state, str(wpath), metadata={"format": FORMAT})
    with wpath.open("rb+") as f:
        os.fsync(f.fileno())
    created = changes.pop("created_at", None) or datetime.now(timezone.utc).isoformat(timespec="seconds")
    cfg = BridgeConfig(**{**asdict(bridge.config), **changes, "created_at": created, "sha256": _sha256(wpath)})
    _fsync_write(directory / CONFIG_NAME, (json.dumps(asdict(cfg), indent=2) + "\n").encode())
    bridge.config = cfg
    return cfg


def read_bridge_config(directory: str | os.PathLike[str]) -> BridgeConfig:
    path = Path(directory) / CONFIG_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelFilesError(f"bridge checkpoint {directory} has no {CONFIG_NAME}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFilesError(f"bridge config {path} is unreadable: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelFilesError(f"{path} is not an {FORMAT} config")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFilesError(f"{path} has format_version {data['format_version']}; this assistant reads up to "
                              f"{FORMAT_VERSION}", fix="upgrade the assistant")
    allowed = {f.name for f in fields(BridgeConfig)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ModelFilesError(f"{path}: unknown keys {unknown}")
    try:
        return BridgeConfig(**data)
    except TypeError as exc:
        raise ModelFilesError(f"{path}: {exc}") from exc


def load_bridge(directory: str | os.PathLike[str], *, encoder_id: str, llm_id: str, encoder_dim: int,
                llm_dim: int, ctc_blank_id: int | None, device: torch.device | str = "cpu",
                check_ids: bool = True) -> LoadedBridge:
    """Rebuild a bridge from its JSON and load its weights, refusing one that does not fit.

    ``ctc_blank_id`` is the loaded encoder's blank (None: the encoder has no CTC head).
    """
    directory = Path(directory)
    cfg = read_bridge_config(directory)
    problems = []
    if cfg.encoder_dim != encoder_dim:
        problems.append(f"encoder dim: bridge {cfg.encoder_dim}, loaded encoder {encoder_dim}")
    if cfg.llm_dim != llm_dim:
        problems.append(f"LLM dim: bridge {cfg.llm_dim}, loaded LLM {llm_dim}")
    if check_ids and cfg.encoder_id != encoder_id:
        problems.append(f"encoder: bridge was trained for {cfg.encoder_id}, loaded encoder is {encoder_id}")
    if check_ids and cfg.llm_id != llm_id:
        problems.append(f"LLM: bridge was trained for {cfg.llm_id}, loaded LLM is {llm_id}")
    if problems:
        raise BridgeMismatchError(f"bridge {directory} ({cfg.version}) does not fit: " + "; ".join(problems),
                                  fix="use a bridge trained for these models, or train one")
    if cfg.kind == "ctc" and ctc_blank_id is None:
        raise BridgeMismatchError(
            f"bridge {directory} is a ctc bridge but the loaded encoder {encoder_id} has no CTC head",
            fix="use a conv bridge (engine.bridge_kind = 'conv') or an encoder with a CTC head")
    if cfg.kind == "ctc" and cfg.ctc_blank_id != ctc_blank_id:
        raise BridgeMismatchError(f"bridge {directory}: CTC blank id {cfg.ctc_blank_id}, encoder's is {ctc_blank_id}")
    wpath = directory / WEIGHTS_NAME
    if not wpath.is_file():
        raise ModelFilesError(f"bridge checkpoint {directory} has no {WEIGHTS_NAME}")
    if not cfg.sha256:
        raise ModelFilesError(f"bridge checkpoint {directory} has no sha256 in {CONFIG_NAME}",
                              fix="re-save it with save_bridge()")
    if _sha256(wpath) != cfg.sha256:
        raise ModelFilesError(f"bridge checkpoint {directory} is corrupt: {WEIGHTS_NAME} does not match the "
                              f"sha256 in {CONFIG_NAME}", fix="restore it or use another version")
    try:
        module = build_bridge(cfg.kind, encoder_dim=cfg.encoder_dim, llm_dim=cfg.llm_dim, hidden_dim=cfg.hidden_dim,
                              blank_id=cfg.ctc_blank_id, input_norm=cfg.input_norm, ctc_vocab=cfg.ctc_vocab,
                              adapter_dim=cfg.adapter_dim, head_vocab=cfg.head_vocab,
                              voice_routing=cfg.voice_routing, adapter_kernel=cfg.adapter_kernel,
                              adapter_dropout=cfg.adapter_dropout, text_input=cfg.text_input)
    except ValueError as exc:
        raise ModelFilesError(f"bridge config {directory / CONFIG_NAME}: {exc}") from exc
    try:
        state = load_file(str(wpath))
        module.load_state_dict(state, strict=True)
    except (RuntimeError, OSError, ValueError) as exc:  # wrong keys/shapes or an unreadable file
        raise ModelFilesError(f"bridge weights {wpath} do not match {CONFIG_NAME}: {exc}") from exc
    return LoadedBridge(module=module.to(device).eval().requires_grad_(False), config=cfg)
