"""Bridge versions at serving time: register the bundle's base bridge, activate (and roll back) versions.

Activation follows peft's hotswap and is one call on the inference thread (``activate``, run through
``Worker.call``): look the version up, load it and check it against the serving encoder and LLM (the
same ``check_compatible`` as any load), swap the one reference between utterances, then record the new
active version in the store in one transaction. A failure anywhere leaves the previous bridge serving;
the previous bridge object is what a rollback swaps back to. Failures are domain errors
(``NotFoundError``, ``RefusedError``, ``BridgeMismatchError``, ``ModelFilesError``) that the API maps
to statuses in its one table.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.errors import BridgeMismatchError, RefusedError

if TYPE_CHECKING:
    from assistant.engine.engine import Engine
    from assistant.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Swapped:
    active: str
    previous: str

    def to_json(self) -> dict:
        return {"active": self.active, "previous": self.previous}


def register_base(store: "Store", engine: "Engine") -> None:
    """Record the bridge the engine serves (the bundle's) as a version; make it active if none is."""
    from assistant.store import repo

    b = engine.bridge
    path = engine.bundle.bridge_dir(b.kind) if engine.bundle else Path(".")
    with store.session() as s:
        if not any(v.version == b.version for v in repo.list_bridge_versions(s)):
            repo.add_bridge_version(s, version=b.version, parent_version=b.config.parent_version, kind=b.kind,
                                    path=str(path), sha256=b.config.sha256, status="base",
                                    metrics=b.config.metrics, data_summary={"source": "bundle"})
        if repo.get_active_bridge(s) is None:
            repo.set_active_bridge(s, version=b.version)


def activate(store: "Store", data_dir: Path, engine: "Engine", version: str) -> Swapped:
    """Serve ``version`` from the next utterance on. Call it on the thread that owns ``engine`` (the
    inference worker's ``call``): load -> check -> swap -> record, or raise with the old bridge serving."""
    from assistant.engine.engine import Engine
    from assistant.store import repo

    with store.session(write=False) as s:
        row = repo.get_bridge_version(s, version=version)  # NotFoundError names the version
        if row.status == "rejected":
            raise RefusedError(f"bridge version {version} was rejected by the quality gate and cannot be activated",
                               fix="list the versions with `assistant bridges list`; activate an accepted one")
        path = data_dir / row.path  # trained versions are stored relative to the data dir; the base's is absolute
    loaded = Engine.load_bridge_for(path, engine.encoder, engine.llm)
    if loaded.version != version:
        raise BridgeMismatchError(f"{path} holds bridge {loaded.version}, not {version}",
                                  fix="the version's directory was replaced; activate another version")
    previous = engine.swap_bridge(loaded)
    try:
        with store.session() as s:
            repo.set_active_bridge(s, version=version)
    except Exception:
        engine.swap_bridge(previous)  # the store must name what serves
        raise
    log.info("bridge %s active (was %s)", version, previous.version)
    return Swapped(active=version, previous=previous.version)


async def activate_now(daemon, version: str) -> Swapped:
    """``activate`` on the inference thread, awaited from the event loop (the API's rollback)."""
    return await asyncio.wrap_future(
        daemon.worker.call(lambda engine: activate(daemon.store, daemon.data_dir, engine, version)))


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
        await activate_now(daemon, version)
    except Exception as exc:  # noqa: BLE001 - any failure means: do not serve it
        log.error("the active bridge %s cannot be loaded (%s); serving %s instead", version, exc, serving)

        def fall_back():
            with daemon.store.session() as s:
                repo.set_active_bridge(s, version=serving)

        await asyncio.to_thread(fall_back)
