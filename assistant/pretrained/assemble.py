"""Assemble pretrained models from their weight packages into ``<data_dir>/pretrained/<name>/``
(``$ASSISTANT_PRETRAINED_DIR/<name>/`` when that is set).

    <data_dir>/pretrained/<name>/source.json   identity, sha256 of the source file, canonical digest
    <data_dir>/pretrained/<name>/encoder/      Whisper: transformers WhisperEncoder (config.json,
                                               model.safetensors, preprocessor_config.json)
    <data_dir>/pretrained/<name>/ct2/          Whisper in pieces: the joined CTranslate2 model (the peer,
                                               faster-whisper, runs it); a one-piece model is run from
                                               its package directory
    <data_dir>/pretrained/<name>/llm/          GGUF LLM: transformers causal LM, dequantized (safetensors,
                                               tokenizer, chat template)

Done once, on first use: the source file's sha256 is checked against the pin first, the conversion is
written to ``<name>.partial`` and renamed into place only when complete, so a missing or corrupt package
leaves one clear error and no half directory. A lock file keeps two processes from doing it at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from assistant.bundle import POINTER_NAME
from assistant.errors import ModelFilesError
from assistant.pretrained.sources import SOURCES, WeightSource, get_source, package_file

log = logging.getLogger(__name__)

SOURCE_JSON = "source.json"
FORMAT = "assistant-pretrained"
FORMAT_VERSION = 1


def pretrained_root(data_dir: str | Path) -> Path:
    """``$ASSISTANT_PRETRAINED_DIR`` when set (one assembly shared by several data directories: tests,
    benchmarks), else ``<data_dir>/pretrained``."""
    env = os.environ.get("ASSISTANT_PRETRAINED_DIR")
    return Path(env).expanduser() if env else Path(data_dir).expanduser() / "pretrained"


def component_id(info: dict) -> str:
    """The identity a bundle and its bridges record: the public name and 16 hex digits of the canonical
    digest (the same for any file format of these weights)."""
    return f"{info['identity']}@{info['digest'][:16]}"


def read_info(directory: Path) -> dict | None:
    try:
        info = json.loads((directory / SOURCE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("format") == FORMAT else None


def ensure(name: str, data_dir: str | Path) -> Path:
    """The assembled directory of pretrained model ``name``, assembling it first when needed."""
    source = get_source(name)
    root = pretrained_root(data_dir)
    final = root / name
    info = read_info(final)
    if info is not None and info.get("sha256") == source.sha256:
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root / f"{name}.lock"):
        info = read_info(final)  # another process may have finished it meanwhile
        if info is not None and info.get("sha256") == source.sha256:
            return final
        return _assemble(source, final)


@contextmanager
def _lock(path: Path):
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _hash_parts(source: WeightSource, paths: list[Path], out: Path | None) -> str:
    """sha256 of the parts joined in order; also writes the joined file when ``out`` is given."""
    h = hashlib.sha256()
    sink = out.open("wb") if out is not None else None
    try:
        for p in paths:
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
                    if sink is not None:
                        sink.write(chunk)
    finally:
        if sink is not None:
            sink.close()
    return h.hexdigest()


def _assemble(source: WeightSource, final: Path) -> Path:
    paths = [package_file(source, f) for f in source.parts]  # a missing package fails here, before any write
    extras = [package_file(source, f) for f in source.extras]
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    # a warning so that the CLI shows it: the first answer waits for this, once
    log.warning("first use of %s: converting it from %s into %s (once)", source.identity,
                ", ".join(d for d, _ in source.dists), final)
    try:
        joined = partial / "ct2" / "model.bin" if len(paths) > 1 else None
        if joined is not None:
            joined.parent.mkdir()
        digest = _hash_parts(source, paths, joined)
        if digest != source.sha256:
            raise ModelFilesError(
                f"the weights of {source.identity} from {', '.join(d for d, _ in source.dists)} are corrupt: "
                f"sha256 {digest[:16]}..., expected {source.sha256[:16]}...",
                fix="reinstall: " + source.install_hint().replace("--no-deps", "--no-deps --force-reinstall"))
        weights = joined if joined is not None else paths[0]
        if source.kind == "whisper-ct2":
            if joined is not None:
                for e in extras:
                    shutil.copyfile(e, partial / "ct2" / e.name)
            canonical = _convert_whisper(weights, partial / "encoder")
        elif source.kind == "gguf-llm":
            canonical = _convert_gguf(weights, partial / "llm")
        else:  # a table entry this code does not know: a programming error, said plainly
            raise ModelFilesError(f"pretrained source {source.name} has unknown kind {source.kind!r}")
        info = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "name": source.name, "identity": source.identity,
            "kind": source.kind, "sha256": source.sha256, "digest": canonical, "license": source.license,
            "packages": [f"{d}=={v}" for d, v in source.dists],
            "ct2_dir": str(paths[0].parent) if joined is None and source.kind == "whisper-ct2" else "ct2",
            "assembled_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (partial / SOURCE_JSON).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


def ct2_dir(name: str, data_dir: str | Path) -> Path:
    """The CTranslate2 directory of a Whisper source (what faster-whisper loads)."""
    d = ensure(name, data_dir)
    info = read_info(d) or {}
    p = Path(info.get("ct2_dir", "ct2"))
    return p if p.is_absolute() else d / p


def _convert_whisper(model_bin: Path, out: Path) -> str:
    import numpy as np
    from safetensors.numpy import save_file
    from transformers import WhisperConfig, WhisperFeatureExtractor

    from assistant.pretrained.ct2 import canonical_digest, read_ct2, whisper_config, whisper_encoder_state

    model = read_ct2(model_bin)
    state = whisper_encoder_state(model)
    out.mkdir(parents=True)
    cfg = WhisperConfig(**{k: v for k, v in whisper_config(model).items() if k != "model_type"})
    cfg.save_pretrained(out)
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    WhisperFeatureExtractor(feature_size=cfg.num_mel_bins).save_pretrained(out)
    return canonical_digest(state)


def _convert_gguf(gguf: Path, out: Path) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assistant.pretrained.ct2 import canonical_digest

    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except ImportError as exc:  # transformers reads GGUF with the gguf package
        raise ModelFilesError(f"cannot read {gguf.name}: {exc}", fix="pip install gguf accelerate") from exc
    from safetensors.torch import save_file

    out.mkdir(parents=True)
    # transformers will not save a model it loaded from GGUF (it counts as quantized); the weights are
    # plain dequantized floats by now, so they are written as an ordinary checkpoint
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    cfg.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    if getattr(cfg, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # the same tensor as the input embeddings
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    tok.save_pretrained(out)
    return canonical_digest({k: v.numpy() for k, v in state.items()})



def resolve_pointer(component_dir: str | Path, data_dir: str | Path | None = None) -> Path:
    """A bundle component that names a pretrained model (``pretrained.json``: ``{"source": NAME}``)
    instead of holding its weights -> that model's assembled directory (assembled now if needed).
    ``data_dir`` None: the default data directory."""
    component_dir = Path(component_dir)
    try:
        pointer = json.loads((component_dir / POINTER_NAME).read_text(encoding="utf-8"))
        name = pointer["source"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFilesError(f"{component_dir / POINTER_NAME} is unreadable: {exc}",
                              fix='it holds {"source": NAME}, NAME one of ' + ", ".join(sorted(SOURCES))) from exc
    if data_dir is None:
        from assistant.config import default_data_dir

        data_dir = default_data_dir()
    return ensure(str(name), data_dir)
