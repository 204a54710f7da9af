"""Start a real `assistant serve` in a subprocess (real uvicorn on 127.0.0.1, real SQLite file)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class DaemonProcess:
    def __init__(self, data_dir: Path, bundle: Path, *, source: str = "none", extra_config: str = "",
                 env: dict | None = None) -> None:
        self.data_dir, self.bundle, self.source = data_dir, bundle, source
        self.config = data_dir.parent / f"{data_dir.name}.toml"
        self.config.write_text(extra_config)
        self.env = {**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log = data_dir.parent / f"{data_dir.name}.log"

    def start(self, timeout_s: float = 120) -> "DaemonProcess":
        (self.data_dir / "daemon.json").unlink(missing_ok=True)
        self._log_f = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assistant_services.cli", "--config", str(self.config), "serve", "--data-dir",
             str(self.data_dir), "--bundle", str(self.bundle), "--source", self.source, "--port", "0"],
            cwd=REPO, stdout=self._log_f, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (self.data_dir / "daemon.json").is_file():
                info = json.loads((self.data_dir / "daemon.json").read_text())
                self.port = info["port"]
                self.token = (self.data_dir / "api-token").read_text().strip()
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"daemon not ready in {timeout_s} s:\n{self.log.read_text()[-3000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def wait_speaker_ready(self, timeout_s: float = 30) -> None:
        """The daemon opens its output once the microphone runs (Speaker.warm_up): wait for it (bounded)."""
        import httpx

        deadline = time.monotonic() + timeout_s
        while not (httpx.get(self.url + "/v1/status", headers=self.headers).json()["speaker"] or {}).get("ready"):
            assert time.monotonic() < deadline, "the speaker never got ready"
            time.sleep(0.1)

    def stop(self, timeout_s: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack goes to the log
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            self.kill()
            raise AssertionError(f"the daemon did not stop within {timeout_s} s of SIGTERM:\n"
                                 f"{self.log.read_text()[-3000:]}") from None
        finally:
            self._log_f.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if hasattr(self, "_log_f"):
            self._log_f.close()
