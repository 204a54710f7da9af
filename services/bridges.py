"""Bridge versions at serving time: register the bundle's base bridge, activate (and roll back) versions.

Activation follows peft's hotswap: load the candidate and check it (dims, identities, checksum) on the
inference thread, swap the one reference between utterances, then record the new active version in
the store in one transaction. The previous bridge object is what a rollback swaps back to.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register_base(daemon, engine) -> None:
    """Record the bridge the engine serves (the bundle's) as a version; make it active if none is."""
    from assistant.store import repo

    b = engine.bridge
    path = engine.bundle.bridge_dir(b.kind) if engine.bundle else Path(".")
    with daemon.store.session() as s:
        if not any(v.version == b.version for v in repo.list_bridge_versions(s)):
            repo.add_bridge_version(s, version=b.version, parent_version=b.config.parent_version, kind=b.kind,
                                    path=str(path), sha256=b.config.sha256, status="base",
                                    metrics=b.config.metrics, data_summary={"source": "bundle"})
        if repo.get_active_bridge(s) is None:
            repo.set_active_bridge(s, version=b.version)


async def activate(daemon, version: str) -> dict:
    from assistant.engine.engine import Engine
    from assistant.store import repo
    from services.api.app import ApiError

    def lookup():
        with daemon.store.session() as s:
            row = repo.get_bridge_version(s, version=version)
            if row.status == "rejected":
                raise ApiError(409, f"bridge version {version} was rejected by the quality gate and cannot be "
                                    "activated")
            return daemon.data_dir / row.path  # trained versions are stored relative to the data dir

    path = await asyncio.to_thread(lookup)

    def load_and_swap(engine):
        loaded = Engine.load_bridge_for(path, engine.encoder, engine.llm)
        if loaded.version != version:
            raise ApiError(409, f"{path} holds bridge {loaded.version}, not {version}")
        return engine.swap_bridge(loaded)

    previous = await asyncio.wrap_future(daemon.worker.call(load_and_swap))

    def record():
        with daemon.store.session() as s:
            repo.set_active_bridge(s, version=version)

    try:
        await asyncio.to_thread(record)
    except Exception:
        # The store must name what serves: put the previous bridge back before reporting the failure.
        await asyncio.wrap_future(daemon.worker.call(lambda engine: engine.swap_bridge(previous)))
        raise
    log.info("bridge %s active (was %s)", version, previous.version)
    return {"active": version, "previous": previous.version}


async def restore_active(daemon) -> None:
    """At start: serve the version the store names as active; a missing or corrupt one is refused
    loudly and the bundle's bridge keeps serving (and becomes the active version again)."""
    from assistant.store import repo

    def active():
        with daemon.store.session(write=False) as s:
            return repo.get_active_bridge(s)

    version = await asyncio.to_thread(active)
    serving = daemon.worker.engine.bridge.version
    if version is None or version == serving:
        return
    try:
        await activate(daemon, version)
    except Exception as exc:  # noqa: BLE001 - any failure means: do not serve it
        log.error("the active bridge %s cannot be loaded (%s); serving %s instead", version, exc, serving)

        def fall_back():
            with daemon.store.session() as s:
                repo.set_active_bridge(s, version=serving)

        await asyncio.to_thread(fall_back)
