"""A small client for the running daemon's API (used by the everyday CLI verbs).

It finds the daemon through ``<data dir>/daemon.json`` (written at start) and the token in
``<data dir>/api-token``. Standard library only: the CLI must stay light.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from assistant.errors import AssistantError

SERVICE_DATA_DIR = Path("/var/lib/assistant")  # the system service's (systemd/assistant.service)


class DaemonClient:
    def __init__(self, base_url: str, token: str, timeout_s: float = 30.0) -> None:
        self.base_url, self.token, self.timeout_s = base_url.rstrip("/"), token, timeout_s

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> "DaemonClient":
        """The daemon whose ``daemon.json`` is in ``data_dir``; when none runs there, the system service's
        (SERVICE_DATA_DIR), which members of its group ``assistant`` may use."""
        info_path, token_path = data_dir / "daemon.json", data_dir / "api-token"
        if not info_path.is_file() and data_dir != SERVICE_DATA_DIR:
            service = SERVICE_DATA_DIR / "daemon.json"
            try:
                if service.is_file():
                    return cls.from_data_dir(SERVICE_DATA_DIR)
            except PermissionError:
                pass
            if SERVICE_DATA_DIR.is_dir() and not os.access(SERVICE_DATA_DIR, os.R_OK | os.X_OK):
                raise AssistantError(f"no daemon of yours runs ({info_path} is missing), and the system "
                                     f"service's {SERVICE_DATA_DIR} is not readable by you",
                                     fix="join its group: sudo usermod -aG assistant $USER, then log in again")
        if not info_path.is_file():
            raise AssistantError(f"no running daemon found ({info_path} is missing)",
                                 fix="start it with 'assistant serve' (or systemctl start assistant)")
        try:
            info = json.loads(info_path.read_text())
            token = token_path.read_text().strip()
        except (OSError, ValueError) as exc:
            raise AssistantError(f"cannot read the daemon's address or token in {data_dir}: {exc}",
                                 fix="join the daemon's group (sudo usermod -aG assistant $USER), or pass "
                                     "--data-dir") from exc
        host = info.get("host", "127.0.0.1")
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return cls(f"http://{host}:{info['port']}", token)

    def _request(self, method: str, path: str, body: dict | None = None, params: dict | None = None):
        path = path + (("?" + urllib.parse.urlencode(params)) if params else "")
        data = json.dumps(body).encode() if body is not None else None
        return self.request_raw(method, path, data, "application/json")

    def request_raw(self, method: str, path: str, body: bytes | None, content_type: str):
        req = urllib.request.Request(self.base_url + path, data=body, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                msg = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                msg = exc.reason
            raise AssistantError(f"the daemon answered {exc.code}: {msg}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise AssistantError(f"cannot reach the daemon at {self.base_url}: {exc}",
                                 fix="is 'assistant serve' running?") from exc

    def get(self, path: str, params: dict | None = None):
        return self._request("GET", path, params=params)

    def post(self, path: str, body: dict | None = None):
        return self._request("POST", path, body or {})

    def patch(self, path: str, body: dict):
        return self._request("PATCH", path, body)

    def delete(self, path: str):
        return self._request("DELETE", path)
