"""Bridge checkpoints: ``bridge.safetensors`` + ``bridge.json`` in one directory.

The JSON describes everything needed to rebuild the module (kind, dims, blank id), the encoder and
LLM identities it was trained for, its version and parent, training metrics, creation time, and the
sha256 of the weights file (a corrupt or half-written checkpoint is refused). Never a pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from assistant.engine.bridge import BRIDGE_KINDS, build_bridge
from assistant.errors import BridgeMismatchError, ModelFilesError
from assistant.strict import from_dict

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
    # > 0: the bridge owns a personal top, a trained copy of the encoder's last top_layers pretrained layers
    # and its CTC module's layers, reading the encoder's lower states (whisper.EncoderTop; ctc bridges)
    top_layers: int = 0
    # > 0: that top's Whisper layers are the encoder's own, shared, with a trained update of this rank on each
    # Linear (engine/lora.py); 0: a full copy (28 MB per version for two Whisper base layers)
    top_rank: int = 0
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
    return from_dict(BridgeConfig, data, error=ModelFilesError, noun="bridge config key", source=str(path))


@dataclass(frozen=True)
class ModelFacts:
    """What a bridge must fit on one side: a model's identity, width and (an encoder's) CTC blank id.

    ``SpeechEncoder`` and ``CausalLM`` have the same attributes, so ``check_compatible`` takes either.
    """

    identity: str
    dim: int
    blank_id: int | None = None  # None: no CTC head
    top_layers: int = 0  # layers of the top a bridge can own a copy of (0: none)

    @property
    def has_ctc(self) -> bool:
        return self.blank_id is not None


def check_compatible(config: BridgeConfig, encoder: Any, llm: Any, *, check_ids: bool = True,
                     name: str | None = None) -> None:
    """Raise ``BridgeMismatchError`` naming everything that differs when a bridge described by ``config``
    cannot run between ``encoder`` and ``llm`` (a ``SpeechEncoder`` / ``CausalLM``, or ``ModelFacts``):
    dims, model identities (unless ``check_ids`` is off), a ctc bridge's CTC head and blank id.

    The one check for loading a bridge from disk (``load_bridge``) and for swapping one in
    (``Engine.swap_bridge``); it reads only the config, so it can run before any weights are loaded.
    """
    enc_blank = encoder.blank_id if encoder.has_ctc else None
    problems = []
    dims = []
    if config.encoder_dim != encoder.dim:
        dims.append(f"encoder dim: bridge {config.encoder_dim}, loaded encoder {encoder.dim}")
    if config.llm_dim != llm.dim:
        dims.append(f"LLM dim: bridge {config.llm_dim}, loaded LLM {llm.dim}")
    if dims:
        problems.append(f"dims differ ({'; '.join(dims)})")
    if check_ids and config.encoder_id != encoder.identity:
        problems.append(f"encoder: bridge was trained for {config.encoder_id}, loaded encoder is {encoder.identity}")
    if check_ids and config.llm_id != llm.identity:
        problems.append(f"LLM: bridge was trained for {config.llm_id}, loaded LLM is {llm.identity}")
    if config.top_layers and config.top_layers != getattr(encoder, "top_layers", 0):
        problems.append(f"the bridge owns a personal top of {config.top_layers} encoder layers; the loaded "
                        f"encoder {encoder.identity} offers {getattr(encoder, 'top_layers', 0)}")
    no_head = config.kind == "ctc" and enc_blank is None
    if no_head:
        problems.append(f"it is a ctc bridge but the loaded encoder {encoder.identity} has no CTC head")
    elif config.kind == "ctc" and config.ctc_blank_id != enc_blank:
        problems.append(f"CTC blank id: bridge {config.ctc_blank_id}, loaded encoder {enc_blank}")
    if problems:
        fix = ("use a conv bridge (engine.bridge_kind = 'conv') or an encoder with a CTC head" if no_head and
               len(problems) == 1 else "use a bridge trained for these models, or train one")
        raise BridgeMismatchError(f"{name or f'bridge {config.version}'} does not fit: " + "; ".join(problems),
                                  fix=fix)


def load_bridge(directory: str | os.PathLike[str], *, encoder_id: str, llm_id: str, encoder_dim: int,
                llm_dim: int, ctc_blank_id: int | None, device: torch.device | str = "cpu",
                check_ids: bool = True, encoder_top: Callable[[int], torch.nn.Module] | None = None,
                encoder_top_layers: int = 0) -> LoadedBridge:
    """Rebuild a bridge from its JSON and load its weights, refusing one that does not fit.

    ``ctc_blank_id`` is the loaded encoder's blank (None: the encoder has no CTC head). ``encoder_top``
    makes a personal top of the encoder's (``SpeechEncoder.personal_top``, ``encoder_top_layers`` layers; the
    argument is the bridge's ``top_rank``) for a bridge that owns one.
    """
    directory = Path(directory)
    cfg = read_bridge_config(directory)
    check_compatible(cfg, ModelFacts(encoder_id, encoder_dim, ctc_blank_id, encoder_top_layers),
                     ModelFacts(llm_id, llm_dim), check_ids=check_ids, name=f"bridge {directory} ({cfg.version})")
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
    if cfg.top_layers:
        if encoder_top is None:  # check_compatible refused an encoder without a top already
            raise ModelFilesError(f"bridge {directory} owns a personal top; pass the encoder's to load it")
        module.top = encoder_top(cfg.top_rank).float().cpu()
    try:
        state = load_file(str(wpath))
        module.load_state_dict(state, strict=True)
    except (RuntimeError, OSError, ValueError) as exc:  # wrong keys/shapes or an unreadable file
        raise ModelFilesError(f"bridge weights {wpath} do not match {CONFIG_NAME}: {exc}") from exc
    return LoadedBridge(module=module.to(device).eval().requires_grad_(False), config=cfg)
