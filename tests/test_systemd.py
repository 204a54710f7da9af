"""The systemd unit, the install/uninstall scripts and the example config.

`systemd-analyze` comes from the Debian package `systemd` (deploy/bootstrap.sh test installs it).
Without it these tests fail under CI (``$CI`` set) and are skipped elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from assistant.config import Config, load_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6)
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "assistant.service"
EXAMPLE = REPO / "deploy" / "config.example.toml"
SCRIPTS = [REPO / "deploy" / name for name in ("install.sh", "uninstall.sh", "lib.sh", "bootstrap.sh")]
MAX_EXPOSURE = 2.5

# Options left relaxed on purpose, with the words the comment directly above each must contain: the
# option's name and its reason. A relaxation without its comment, or a changed value, fails here.
RELAXED = {
    "PrivateDevices=no": ["PrivateDevices", "/dev/snd", "/dev/nvhost", "DevicePolicy=closed"],
    "MemoryDenyWriteExecute=no": ["MemoryDenyWriteExecute", "oneDNN", "cffi"],
    "PrivateNetwork=no": ["PrivateNetwork", "127.0.0.1", "loopback"],
    "PrivateUsers=no": ["PrivateUsers", "audio", "video"],
    "ProcSubset=all": ["ProcSubset", "/proc/cpuinfo"],
    "SystemCallFilter=@system-service": ["SystemCallFilter", "@resources"],
    "SupplementaryGroups=audio video": ["audio", "/dev/snd", "video", "Jetson"],
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6": ["AF_UNIX", "sd_notify", "AF_INET", "AF_NETLINK"],
    "ProtectHome=yes": ["/run/user", "ALSA", "PulseAudio"],
    "IPAddressAllow=localhost": ["local"],
}


def _tool(name: str, package: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        reason = f"{name} is not installed (Debian package {package}; deploy/bootstrap.sh test installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return exe


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def _unit_lines() -> list[str]:
    return UNIT.read_text(encoding="utf-8").splitlines()


def _comment_above(lines: list[str], index: int) -> str:
    """The comment block directly above lines[index] (skipping lines of the same key, e.g. a run of
    DeviceAllow=)."""
    key = lines[index].split("=", 1)[0]
    i = index - 1
    while i >= 0 and lines[i].split("=", 1)[0] == key and not lines[i].startswith("#"):
        i -= 1
    block: list[str] = []
    while i >= 0 and lines[i].startswith("#"):
        block.insert(0, lines[i].lstrip("# "))
        i -= 1
    return " ".join(block)


# ---- (a) systemd-analyze verify ----------------------------------------------------------------


def test_unit_verifies(tmp_path):
    analyze = _tool("systemd-analyze", "systemd")
    stub = tmp_path / "assistant"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    # verify checks that every Exec*= binary exists: point them at the stub.
    text, n = re.subn(r"^(Exec\w+=[-@:+!]*)/\S+", lambda m: m.group(1) + str(stub), UNIT.read_text(),
                      flags=re.M)
    assert n >= 1, "no ExecStart= in the unit"
    unit = tmp_path / "assistant.service"
    unit.write_text(text)
    proc = _run([analyze, "verify", "--man=no", str(unit)], cwd=tmp_path)
    out = (proc.stdout + proc.stderr).splitlines()
    bad = [line for line in out
           if "assistant.service" in line or "Unknown" in line or "gnoring" in line or "Failed to parse" in line]
    assert proc.returncode == 0 and not bad, "\n".join(out)


def test_unit_shape():
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=60", "TimeoutStartSec=300", "TimeoutStopSec=30", "KillMode=mixed",
                 "Restart=on-failure", "User=assistant", "StateDirectory=assistant",
                 "ConfigurationDirectory=assistant", "DevicePolicy=closed", "DeviceAllow=char-alsa rw",
                 "IPAddressDeny=any", "ProtectSystem=strict", "NoNewPrivileges=yes"):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), f"{line} missing from {UNIT}"
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.M).group(1).split()
    assert exec_start[:2] == ["/opt/assistant/venv/bin/assistant", "serve"]
    assert "--data-dir" in exec_start and exec_start[exec_start.index("--data-dir") + 1] == "/var/lib/assistant"
    # No log files: stdout/stderr go to the journal.
    assert not re.search(r"^Standard(Output|Error)=(file|append|truncate):", text, re.M)
    # install.sh installs the venv where the unit runs it from.
    assert 'PREFIX=/opt/assistant' in (REPO / "deploy" / "install.sh").read_text()


# ---- (b) systemd-analyze security --------------------------------------------------------------


def test_security_exposure():
    analyze = _tool("systemd-analyze", "systemd")
    proc = _run([analyze, "security", "--offline=true", "--no-pager", str(UNIT)])
    out = proc.stdout + proc.stderr
    m = re.search(r"Overall exposure level for assistant\.service: (\d+(?:\.\d+)?)", out)
    assert m, out
    exposure = float(m.group(1))
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} > {MAX_EXPOSURE}:\n{out}"


# ---- (c) every relaxation says why -------------------------------------------------------------


def test_relaxed_options_are_explained():
    lines = _unit_lines()
    for option, words in RELAXED.items():
        where = [i for i, line in enumerate(lines) if line.strip() == option]
        assert len(where) == 1, f"{option!r} should be set exactly once in {UNIT.name}"
        comment = _comment_above(lines, where[0])
        missing = [w for w in words if w not in comment]
        assert not missing, f"the comment above {option} must give the reason (missing {missing}): {comment!r}"


def test_every_no_and_device_allow_has_a_comment():
    lines = _unit_lines()
    for i, line in enumerate(lines):
        key = line.split("=", 1)[0]
        if line.endswith("=no"):
            assert key in _comment_above(lines, i), f"{line}: no comment naming {key} directly above"
        if key == "DeviceAllow":
            assert _comment_above(lines, i), f"{line}: no comment directly above the DeviceAllow= block"


# ---- (d) the example config --------------------------------------------------------------------


def test_example_config_is_the_defaults():
    assert load_config(EXAMPLE) == Config()


def test_example_config_has_every_key_with_a_comment():
    text = EXAMPLE.read_text()
    data = tomllib.loads(text)
    assert re.search(r"^# data_dir = \"\"$", text, re.M), "data_dir should be shown commented out"
    assert "data_dir" not in data
    sections = {f.name: f.default_factory for f in fields(Config) if f.name != "data_dir"}
    assert set(data) == set(sections)
    for name, factory in sections.items():
        assert set(data[name]) == {f.name for f in fields(factory())}, f"[{name}] keys differ from the dataclass"
    for line in text.splitlines():
        if re.match(r"^\w+ = ", line):
            assert "#" in line.split("=", 1)[1], f"no comment on {line!r}"


# ---- (e) the scripts ---------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_syntax(script):
    proc = _run(["bash", "-n", str(script)])
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script):
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed")
    proc = _run([shellcheck, "-x", str(script)], cwd=script.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", ["install.sh", "uninstall.sh"])
def test_script_help_and_bad_flag(script):
    path = REPO / "deploy" / script
    ok = _run(["bash", str(path), "--help"])
    assert ok.returncode == 0 and "usage" not in ok.stderr.lower() and "--" in ok.stdout
    bad = _run(["bash", str(path), "--bogus"])
    assert bad.returncode == 2 and "unknown argument: --bogus" in bad.stderr
