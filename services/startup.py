"""What the daemon does to its store at start (crash recovery, the base bridge, the shipped prompts) and
the retention loop that keeps the store within its configured age and size."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def prepare_store(store, data_dir: Path, engine) -> None:
    """Finish what a crash interrupted, register the bundle's bridge, offer the shipped prompts."""
    from assistant.alignment.registry import adopt_orphan_versions, clean_partial
    from assistant.store import repo
    from assistant.synth.text import shipped_prompts
    from assistant_services.bridges import register_base

    clean_partial(data_dir)  # a version write interrupted by a crash; never a complete version
    adopt_orphan_versions(store)  # a complete version whose row a crash kept from being written
    with store.session() as s:
        repo.adopt_orphan_audio(s, data_dir=data_dir)  # captured just before a crash
    register_base(store, engine)
    with store.session() as s:
        # Generic request-domain sentences; users add their own (contacts, places) through the API.
        repo.ensure_shipped_prompts(s, texts=shipped_prompts())


async def retention_loop(store, data_dir: Path, cfg, every_s: float = 3600.0) -> None:
    """Apply store.retention_days / retention_max_mb at start and hourly (labelled and pending
    utterances are never deleted)."""
    from assistant.store import repo

    if not cfg.retention_days and not cfg.retention_max_mb:
        return
    while True:
        def run():
            with store.session() as s:
                return repo.apply_retention(s, data_dir=data_dir, max_age_days=cfg.retention_days or None,
                                            max_bytes=int(cfg.retention_max_mb * 2**20) or None)
        try:
            result = await asyncio.to_thread(run)
            if result.get("deleted"):
                log.info("retention: deleted %d utterance(s), freed %.1f MB", result["deleted"],
                         result["freed_bytes"] / 2**20)
        except Exception:
            log.exception("retention failed; will retry")
        await asyncio.sleep(every_s)
