"""Resumable training checkpoints: ``state.safetensors`` (every tensor) + ``state.json`` (everything else).

Never a pickle: tensors (bridge weights, optimizer moments, adapter cores) go to safetensors under
prefixed names (``bridge.<param>``, ``opt.<index>.<key>``, ``adapter.<name>``); the step, the seed, the
settings, the optimizer's hyper-parameters and the training-set fingerprint go to JSON. The JSON is
written last (temp file + rename, fsynced), so a directory with a ``state.json`` holds a complete state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from assistant.errors import ModelFilesError

FORMAT = "assistant-train-state"
FORMAT_VERSION = 1
TENSORS_NAME = "state.safetensors"
META_NAME = "state.json"


def _fsync(path: Path) -> None:
    with path.open("rb+") as f:
        os.fsync(f.fileno())


def write_state(directory: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / META_NAME).unlink(missing_ok=True)  # an old JSON must not vouch for new tensors
    tmp = directory / (TENSORS_NAME + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": FORMAT})
    _fsync(tmp)
    os.replace(tmp, directory / TENSORS_NAME)
    tmp = directory / (META_NAME + ".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **meta}, indent=1), "utf-8")
    _fsync(tmp)
    os.replace(tmp, directory / META_NAME)
    return directory


def read_state(directory: Path, *, recipe: str, fingerprint: str | None = None
               ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a state written by ``write_state``; refuses another recipe's state or another training set."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / META_NAME).read_text("utf-8"))
        tensors = load_file(str(directory / TENSORS_NAME))
    except (OSError, ValueError) as exc:
        raise ModelFilesError(f"training checkpoint {directory} is missing or unreadable: {exc}") from exc
    if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFilesError(f"{directory} is not a readable {FORMAT} checkpoint")
    if meta.get("recipe") != recipe:
        raise ModelFilesError(f"{directory} holds a {meta.get('recipe')!r} job, not {recipe!r}")
    if fingerprint is not None and meta.get("data") != fingerprint:
        raise ModelFilesError(f"{directory} was trained on another set of examples",
                              fix="start the job again from its parent")
    return tensors, meta


def module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def load_module(prefix: str, module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    n = len(prefix) + 1
    state = {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    with torch.no_grad():
        module.load_state_dict(state, strict=True)


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """-> (tensors ``opt.<param index>.<key>``, JSON: param groups + non-tensor per-param entries)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, entry in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    # JSON turned tuples (AdamW's betas) into lists; give them back their type
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})
