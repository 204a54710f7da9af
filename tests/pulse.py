"""A private PulseAudio server with a virtual microphone, for tests that record through PortAudio.

    from pulse import pulse_server, play_into_mic  # noqa: F401  (pulse_server is a fixture)

    def test_x(pulse_server):
        ...  MicSource(device="pulse") ...
        play_into_mic(wav_path)   # what the "microphone" hears

The server runs from a temp dir with ``-n -F default.pa``: a unix socket with anonymous auth, a null sink
``vmic_sink`` (16 kHz mono) and ``vmic``, a source remapped from the sink's monitor, as default source.
``PULSE_SERVER`` points libpulse there, both for ``paplay`` and for PortAudio in this process, which reaches
PulseAudio through ALSA's ``pulse`` plugin (libasound2-plugins): the PortAudio device named "pulse".

As root, PulseAudio 16 only warns ("not intended to be run as root") without ``--system``; HOME and the
XDG/PULSE paths are pointed into the temp dir so it writes no cookie or state outside it.

Missing pulseaudio/paplay/pactl skips locally and FAILS in CI (``$CI`` set).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from speech import require_tool

SINK, SOURCE = "vmic_sink", "vmic"


@dataclass
class PulseServer:
    directory: Path
    proc: subprocess.Popen
    log_path: Path
    started_in_s: float = 0.0
    env: dict[str, str] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.directory / "native"

    @property
    def server(self) -> str:
        return f"unix:{self.socket}"

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def play_into_mic(self, wav_path: str | os.PathLike[str], timeout_s: float = 30.0) -> float:
        return play_into_mic(wav_path, server=self.server, timeout_s=timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)
        shutil.rmtree(self.directory, ignore_errors=True)


def warm_output(device: str = "pulse") -> None:
    """Play a moment of silence with the microphone open, once: the first time a process does both
    through ALSA's pulse plugin, both streams can stall for ~1.6 s, which a timing measurement must not
    include (services/output.py, Speaker.warm_up, does the same at the daemon's start)."""
    import threading

    import numpy as np
    import sounddevice as sd

    from assistant_services.output import play

    with sd.InputStream(device=device, samplerate=16000, channels=1, dtype="float32", callback=lambda *_: None):
        play(np.zeros(1600, np.float32), 16000, device, threading.Event())


def play_into_mic(wav_path: str | os.PathLike[str], *, server: str | None = None, timeout_s: float = 30.0) -> float:
    """Play a WAV into the virtual microphone; blocks until played; returns the seconds it took.

    ``server`` defaults to ``$PULSE_SERVER`` (which the ``pulse_server`` fixture sets).
    """
    server = server or os.environ.get("PULSE_SERVER")
    if not server:
        raise RuntimeError("no PulseAudio server: use the pulse_server fixture or pass server=")
    t0 = time.monotonic()
    subprocess.run([require_tool("paplay"), f"--server={server}", f"--device={SINK}", os.fspath(wav_path)],
                   check=True, timeout=timeout_s, capture_output=True)
    return time.monotonic() - t0


def start_pulse(timeout_s: float = 10.0) -> PulseServer:
    """Start a private server and wait (bounded) until it answers ``pactl info``."""
    exe, pactl = require_tool("pulseaudio"), require_tool("pactl")
    require_tool("paplay")
    # A short path: unix socket paths are capped at 107 bytes, and pytest's tmp_path can be long.
    d = Path(tempfile.mkdtemp(prefix="pa-"))
    (d / "default.pa").write_text(
        f"load-module module-native-protocol-unix auth-anonymous=1 socket={d}/native\n"
        f"load-module module-null-sink sink_name={SINK} rate=16000 channels=1\n"
        f"load-module module-remap-source master={SINK}.monitor source_name={SOURCE}\n"
        f"set-default-source {SOURCE}\n"
    )
    env = dict(os.environ, HOME=str(d), XDG_RUNTIME_DIR=str(d), XDG_CONFIG_HOME=str(d / "config"),
               PULSE_RUNTIME_PATH=str(d / "runtime"), PULSE_STATE_PATH=str(d / "state"))
    env.pop("PULSE_SERVER", None)
    log_path = d / "pulseaudio.log"
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [exe, "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "-n", "-F", str(d / "default.pa"),
             "--log-target=stderr"], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    srv = PulseServer(d, proc, log_path, env=env)
    deadline = t0 + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        r = subprocess.run([pactl, f"--server={srv.server}", "info"], capture_output=True, timeout=5)
        if r.returncode == 0:
            srv.started_in_s = time.monotonic() - t0
            return srv
        time.sleep(0.1)
    tail = srv.log_tail()
    srv.stop()
    pytest.fail(f"PulseAudio did not start within {timeout_s:g} s (exit {proc.returncode}):\n{tail}")


@pytest.fixture()
def pulse_server(monkeypatch) -> Iterator[PulseServer]:
    """A running private server; ``PULSE_SERVER`` set and PortAudio's device list refreshed to see it."""
    from assistant_services.sources import find_input_device, refresh_devices

    srv = start_pulse()
    monkeypatch.setenv("PULSE_SERVER", srv.server)
    refresh_devices()  # PortAudio enumerated devices at import, before this server existed
    try:
        if find_input_device("pulse") is None:
            msg = ("PortAudio lists no 'pulse' input device although PulseAudio runs: the ALSA pulse plugin "
                   "is missing (apt-get install libasound2-plugins)")
            if os.environ.get("CI"):
                pytest.fail(msg + "; CI must run this test")
            pytest.skip(msg)
        yield srv
    finally:
        srv.stop()
        monkeypatch.delenv("PULSE_SERVER")
        refresh_devices()  # drop the dead "pulse" device
