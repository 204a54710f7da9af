"""The bridge ``assistant transcribe`` / ``respond`` serve: the one the data dir's store names active
(a personalized version), read without touching the running daemon's store, else the bundle's."""

from __future__ import annotations

import sys

from assistant.errors import AssistantError
from assistant_services.terminal import shown


def _active_bridge_row(data_dir) -> tuple[str, str, str, str] | None:
    """(version, kind, status, stored path) of the bridge the data dir's store names active, or None (no store,
    none active). Read-only: the store is the daemon's, which may be running (nothing is created,
    migrated or swept here, unlike ``open_store``)."""
    from urllib.parse import quote

    from sqlalchemy import URL, create_engine
    from sqlalchemy.orm import Session

    from assistant.store import repo
    from assistant.store.db import DB_NAME

    db = data_dir / DB_NAME
    if not db.is_file():
        return None
    engine = create_engine(URL.create("sqlite+pysqlite", database="file:" + quote(str(db.resolve())),
                                      query={"mode": "ro", "uri": "true"}))
    try:
        with Session(engine) as s:
            version = repo.get_active_bridge(s)
            if version is None:
                return None
            row = repo.get_bridge_version(s, version=version)
            return row.version, row.kind, row.status, row.path
    finally:
        engine.dispose()


def serve_active_bridge(cfg, engine) -> None:
    """Serve the personalized bridge the data dir's store names active (as the daemon does), when it is not
    the bundle's own; say on stderr which version serves. One that cannot be used is warned about and the
    bundle's bridge serves."""
    from pathlib import Path

    from assistant.errors import ModelFilesError

    data_dir = cfg.data_path
    bundle_version = engine.bridge.version
    try:
        row = _active_bridge_row(data_dir)
    except Exception as exc:  # noqa: BLE001 - an unreadable store must not stop a transcription
        print(f"warning: cannot read the active bridge from the store in {data_dir} ({shown(exc)}); serving the "
              f"bundle's bridge {bundle_version}", file=sys.stderr)
        return
    if row is None or row[0] == bundle_version or row[2] == "base":
        return  # a base version is a bundle's own bridge: this bundle's serves already
    version, kind, _, stored = row
    if cfg.engine.bridge_kind and kind != cfg.engine.bridge_kind:
        print(f"note: the active bridge {version} is a {kind} bridge, and a {cfg.engine.bridge_kind} bridge was "
              f"asked for; serving the bundle's bridge {bundle_version}", file=sys.stderr)
        return
    path = Path(stored)
    path = path if path.is_absolute() else data_dir / path  # trained versions are stored relative to it
    try:
        loaded = engine.load_bridge_for(path, engine.encoder, engine.llm)
        if loaded.version != version:
            raise ModelFilesError(f"{path} holds bridge {loaded.version}, not {version}")
        engine.swap_bridge(loaded)
    except AssistantError as exc:
        print(f"warning: the active bridge {version} in {data_dir} cannot be used ({shown(exc.problem)}); "
              f"serving the bundle's bridge {bundle_version}", file=sys.stderr)
        return
    print(f"serving the personalized bridge {version} (active in {data_dir}; the bundle's is {bundle_version})",
          file=sys.stderr)
