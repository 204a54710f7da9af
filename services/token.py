"""The API token and the daemon's address file: who may read them."""

from __future__ import annotations

import os
import secrets

from assistant.config import Config

SHARED_MODE = 0o640  # api-token and daemon.json: the owner and the daemon's group (the CLI's users)


def ensure_token(config: Config) -> str:
    """The API token: configured, else read from / generated into ``<data_dir>/api-token`` (0640: the
    daemon's group may read it, which is how a user in group ``assistant`` runs the CLI against the
    system service; the data dir itself decides who gets that far)."""
    path = config.data_path / "api-token"
    if not config.api.token and path.is_file():
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    token = config.api.token or secrets.token_urlsafe(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:  # the CLI verbs read it, configured or generated
        f.write(token + "\n")
        os.fchmod(f.fileno(), SHARED_MODE)  # explicit: the service's UMask=0077 would keep it 0600
    os.replace(tmp, path)
    return token
