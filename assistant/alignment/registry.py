"""Versioned bridges on disk: one immutable directory per version, ``<data_dir>/bridges/<version>/``.

A version is built in a temporary sibling (``.tmp-<version>-<random>``), every file fsynced, the
directory fsynced, then renamed to its final name in one step and the parent fsynced. So whatever
moment a crash (power cut, kill -9) hits, ``bridges/<version>`` is either absent or complete; what is
left over is only a ``.tmp-*`` directory, which ``clean_partial`` removes. A version that exists is
never written again: a new bridge gets a new name (``next_version``).

The store row (``record_version``) is written after the directory: a crash in between leaves a complete
directory without a row, which ``next_version`` steps over instead of colliding with, and which
``adopt_orphan_versions`` records at the next start.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from assistant.engine.checkpoint import WEIGHTS_NAME, BridgeConfig, LoadedBridge, read_bridge_config, save_bridge
from assistant.errors import AssistantError, ModelFilesError, RefusedError
from assistant.store import files, jobs

if TYPE_CHECKING:
    from assistant.engine.engine import Engine
    from assistant.store.db import Store
    from assistant.store.models import BridgeVersion

log = logging.getLogger(__name__)

BRIDGES_DIR = "bridges"
TMP_PREFIX = ".tmp-"
VERSION_RE = re.compile(r"^v(\d{4,})$")


def bridges_dir(data_dir: Path | str) -> Path:
    return Path(data_dir) / BRIDGES_DIR


def version_number(version: str) -> int | None:
    m = VERSION_RE.match(version)
    return int(m.group(1)) if m else None


def next_version(store: "Store") -> str:
    """"v0001", "v0002", ...: one past the highest vNNNN in the store or on disk (a directory left
    without its row by a crash still owns its name)."""
    with store.session(write=False) as s:
        names = [v.version for v in jobs.list_bridge_versions(s)]
    root = bridges_dir(store.data_dir)
    if root.is_dir():
        names += [p.name for p in root.iterdir() if p.is_dir()]  # ".tmp-*" never matches VERSION_RE
    highest = max((n for n in map(version_number, names) if n is not None), default=0)
    return f"v{highest + 1:04d}"


def write_version(bridge: LoadedBridge, data_dir: Path | str, version: str, *, parent_version: str | None,
                  metrics: dict[str, Any], training: dict[str, Any], data_summary: dict[str, Any]) -> Path:
    """Write ``bridge`` as ``<data_dir>/bridges/<version>/`` atomically; returns that path.

    ``bridge.config`` is updated in place (version, parent, metrics, sha256: what ``save_bridge`` wrote).
    The data summary is kept in the JSON under ``training["data_summary"]`` (bridge.json has no field
    of its own for it) so the directory describes itself without the store.
    """
    if version_number(version) is None:
        raise RefusedError(f"bridge version name {version!r} is not of the form v0001")
    root = bridges_dir(data_dir)
    final = root / version
    files.ensure_private_dir(root, Path(data_dir))  # bridges are derived from the user's voice
    if final.exists():
        raise RefusedError(f"bridge version {version} already exists at {final}; versions are immutable",
                           fix="write the new bridge under a new version (next_version)")
    tmp = root / f"{TMP_PREFIX}{version}-{secrets.token_hex(4)}"
    before = bridge.config  # save_bridge rewrites it; a failed write must not leave a phantom version name
    training = {**training, "data_summary": dict(data_summary)}
    routing: dict[str, Any] = {}
    if getattr(bridge.module, "voice_routing", False):
        # the weights hold the voice centroids: a JSON saying otherwise would not even load them back
        routing = {"voice_routing": True}
        training["voice_routing"] = True
    try:
        tmp.mkdir(mode=0o700)
        save_bridge(bridge, tmp, version=version, parent_version=parent_version, metrics=dict(metrics),
                    training=training, **routing)
        files.fsync_dir(tmp)  # the directory entries of both files, before the rename publishes them
        if final.exists():  # another writer got there while we wrote
            raise RefusedError(f"bridge version {version} already exists at {final}; versions are immutable")
        try:
            # rename(2) replaces an *empty* directory silently; the check above covers that case, and
            # a non-empty one fails with ENOTEMPTY/EEXIST.
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise RefusedError(f"bridge version {version} already exists at {final}; versions are "
                                   "immutable") from exc
            raise
        files.fsync_dir(root)
    except BaseException as exc:
        bridge.config = before
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise files.os_error(exc, final, Path(data_dir)) from exc
        raise
    log.info("bridge version %s written to %s (parent %s)", version, final, parent_version)
    return final


def clean_partial(data_dir: Path | str) -> int:
    """Remove ``.tmp-*`` directories a crashed write left behind; returns how many.

    Call it when no version is being written (at daemon start, before a job): a writer's own
    temporary directory looks the same as a crashed one's.
    """
    root = bridges_dir(data_dir)
    if not root.is_dir():
        return 0
    removed = 0
    for p in root.iterdir():
        if p.name.startswith(TMP_PREFIX):
            try:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
                removed += 1
            except OSError as exc:
                log.warning("could not remove the partial bridge version %s: %s", p, exc)
    if removed:
        files.fsync_dir(root)
        log.info("removed %d partial bridge version(s) under %s", removed, root)
    return removed


def record_version(store: "Store", *, version: str, path: Path | str, bridge_config: BridgeConfig, status: str,
                   metrics: dict[str, Any], data_summary: dict[str, Any], job_id: int | None,
                   parent_version: str | None) -> "BridgeVersion":
    """Register a written version in the store (status "accepted" or "rejected" by the gate).

    The path is stored relative to the data dir when it lies inside it, so the data dir can move.
    """
    if status not in ("accepted", "rejected"):
        raise RefusedError(f"a trained bridge version is 'accepted' or 'rejected', not {status!r}")
    if bridge_config.version != version:
        raise RefusedError(f"bridge config says version {bridge_config.version!r}, recording it as {version!r}")
    p = Path(path).resolve()
    try:
        stored = p.relative_to(Path(store.data_dir).resolve()).as_posix()
    except ValueError:
        stored = str(p)
    with store.session() as s:
        row = jobs.add_bridge_version(s, version=version, kind=bridge_config.kind, path=stored,
                                      sha256=bridge_config.sha256, status=status, parent_version=parent_version,
                                      metrics=metrics, data_summary=data_summary, job_id=job_id)
    log.info("bridge version %s recorded as %s", version, status)
    return row


def adopt_orphan_versions(store: "Store") -> list[str]:
    """Record the complete version directories that have no row (a crash between the rename and
    ``record_version``); returns their names. The gate's verdict is in the directory's own JSON
    (``metrics["accepted"]``): an accepted one comes back accepted (never active by itself), anything
    else rejected. Call it at start, when no job can be writing a version."""
    root = bridges_dir(store.data_dir)
    if not root.is_dir():
        return []
    with store.session(write=False) as s:
        known = {v.version for v in jobs.list_bridge_versions(s)}
    adopted = []
    for p in sorted(root.iterdir()):
        if not p.is_dir() or p.is_symlink() or version_number(p.name) is None or p.name in known:
            continue
        try:
            cfg = read_bridge_config(p)
            if cfg.version != p.name:
                raise ModelFilesError(f"its bridge.json says version {cfg.version!r}")
        except ModelFilesError as exc:
            log.error("bridge version directory %s has no store row and cannot be read (%s); left in place", p, exc)
            continue
        status = "accepted" if cfg.metrics.get("accepted") is True else "rejected"
        record_version(store, version=p.name, path=p, bridge_config=cfg, status=status,
                       metrics={**cfg.metrics, "adopted_at_start": True},
                       data_summary=dict(cfg.training.get("data_summary") or {}), job_id=None,
                       parent_version=cfg.parent_version)
        log.warning("bridge version %s was on disk without its store row (a crash while it was recorded): "
                    "adopted as %s", p.name, status)
        adopted.append(p.name)
    return adopted


def verify_version(path: Path | str, *, engine: "Engine") -> LoadedBridge:
    """Load a version dir for ``engine`` (sha256, dims, identities), naming the version in any refusal."""
    path = Path(path)
    try:
        loaded = engine.load_bridge_for(path, engine.encoder, engine.llm)
    except AssistantError as exc:
        # Same class (ModelFilesError / BridgeMismatchError), message led by the version.
        raise type(exc)(f"bridge version {path.name} ({path}) cannot be used: {exc.problem}", fix=exc.fix) from exc
    if version_number(path.name) is not None and loaded.version != path.name:
        raise ModelFilesError(f"bridge version dir {path} holds version {loaded.version!r}, not {path.name!r}",
                              fix="restore the directory; version directories are never renamed")
    return loaded


def _side(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    cfg = read_bridge_config(path)
    wpath = path / WEIGHTS_NAME
    try:
        tensors = load_file(str(wpath))
        digest = hashlib.sha256(wpath.read_bytes()).hexdigest()
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelFilesError(f"bridge weights {wpath} are unreadable: {exc}") from exc
    info = {"version": cfg.version, "parent_version": cfg.parent_version, "kind": cfg.kind,
            "created_at": cfg.created_at, "metrics": cfg.metrics, "training": cfg.training,
            "intact": digest == cfg.sha256}
    return info, tensors


def diff_versions(a: Path | str, b: Path | str) -> dict[str, Any]:
    """How far ``b`` moved from ``a``: relative L2 change per tensor and overall, plus both sides' JSON.

    Relative change = ||b - a|| / ||a|| (a zero tensor in ``a`` gives ||b||). Tensors only on one side or
    with different shapes (a different architecture, e.g. a personal head and adapter grown on a base
    bridge) are listed, not compared; ``sizes`` gives every tensor's element count (``b``'s where both
    have it) and ``compared`` how many tensors the overall change covers. Either side may be any bridge
    directory: a version under ``bridges/`` or a bundle's base bridge.
    """
    info_a, ta = _side(Path(a))
    info_b, tb = _side(Path(b))
    per: dict[str, float] = {}
    shape_changed: list[str] = []
    diff_sq = base_sq = 0.0
    for name in sorted(set(ta) & set(tb)):
        x, y = ta[name].double(), tb[name].double()
        if x.shape != y.shape:
            shape_changed.append(name)
            continue
        d, n = float(torch.linalg.vector_norm(y - x)), float(torch.linalg.vector_norm(x))
        per[name] = d / n if n > 0 else d
        diff_sq, base_sq = diff_sq + d * d, base_sq + n * n
    total = (diff_sq ** 0.5) / (base_sq ** 0.5) if base_sq > 0 else diff_sq ** 0.5
    sizes = {name: int(t.numel()) for name, t in {**ta, **tb}.items()}
    return {"a": info_a, "b": info_b, "tensors": per, "total_relative_change": total, "compared": len(per),
            "only_in_a": sorted(set(ta) - set(tb)), "only_in_b": sorted(set(tb) - set(ta)),
            "shape_changed": shape_changed, "sizes": sizes}


__all__ = ["BRIDGES_DIR", "adopt_orphan_versions", "bridges_dir", "clean_partial", "diff_versions", "next_version",
           "record_version", "verify_version", "version_number", "write_version"]
