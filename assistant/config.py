"""Configuration: frozen dataclasses loaded from one TOML file, validated with errors naming the key.

Search order when no ``--config`` is given: ``$ASSISTANT_CONFIG``, ``/etc/assistant/config.toml``
(systemd), ``$XDG_CONFIG_HOME/assistant/config.toml``; none found means the defaults.
Nothing is built at import time: callers ``load_config()`` and pass the result down.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from assistant.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6)
    import tomli as tomllib


def default_data_dir() -> Path:
    env = os.environ.get("ASSISTANT_DATA_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "assistant"


def demo_bundle_dir() -> Path:
    """The bundle shipped inside the package (built by the synthetic-speakers work)."""
    return Path(__file__).resolve().parent / "demo"


@dataclass(frozen=True)
class AudioConfig:
    max_duration_s: float = 30.0
    min_duration_s: float = 0.1

    def __post_init__(self) -> None:
        _check(self.min_duration_s > 0, "audio.min_duration_s", "a number > 0")
        _check(self.max_duration_s > self.min_duration_s, "audio.max_duration_s", "a number > audio.min_duration_s")


@dataclass(frozen=True)
class EngineConfig:
    bundle: str = ""  # empty: the shipped demo bundle if present, else <data_dir>/bundles/tiny
    bridge_kind: str = ""  # empty: the bundle's default bridge
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    speculative: bool = True  # CTC-draft speculative transcript decoding when the encoder has a CTC head
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default

    def __post_init__(self) -> None:
        _check(self.bridge_kind in ("", "conv", "ctc"), "engine.bridge_kind", "'', 'conv', 'ctc'")
        _check(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            "engine.device",
            "'auto', 'cpu', 'cuda', 'cuda:N'",
        )
        _check(self.threads >= 0, "engine.threads", "an integer >= 0")


@dataclass(frozen=True)
class Config:
    data_dir: str = ""  # empty: $ASSISTANT_DATA_DIR or $XDG_DATA_HOME/assistant
    audio: AudioConfig = field(default_factory=AudioConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser() if self.data_dir else default_data_dir()

    def bundle_path(self) -> Path:
        """The bundle to serve: configured, else the shipped demo, else the tiny dev bundle."""
        if self.engine.bundle:
            return Path(self.engine.bundle).expanduser()
        demo = demo_bundle_dir()
        if (demo / "manifest.json").is_file():
            return demo
        return self.data_path / "bundles" / "tiny"


def _check(ok: bool, key: str, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key} is invalid; allowed: {allowed}")


_SECTIONS = {"audio": AudioConfig, "engine": EngineConfig}


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(f"unknown config key {full}; allowed here: {', '.join(sorted(known))}")
        default = getattr(cls(), key) if key not in _SECTIONS else None
        if key in _SECTIONS and not prefix:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {full} must be a table [{full}]")
            kwargs[key] = _build(_SECTIONS[key], value, f"{full}.")
            continue
        expected = type(default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"config key {full} must be {expected.__name__}, got {type(value).__name__} {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def config_candidates() -> list[Path]:
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    env = os.environ.get("ASSISTANT_CONFIG")
    return ([Path(env)] if env else []) + [Path("/etc/assistant/config.toml"), Path(xdg) / "assistant" / "config.toml"]


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Config:
    """Load and validate the config; ``overrides`` use dotted keys: ``{"engine.bundle": "..."}``."""
    data: dict[str, Any] = {}
    env = os.environ.get("ASSISTANT_CONFIG")
    if not path and env:
        path = env  # named explicitly: a missing file is an error, not a fall-through
    src: Path | None = Path(path) if path else next((p for p in config_candidates() if p.is_file()), None)
    if src is not None:
        try:
            data = tomllib.loads(src.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {src} does not exist", fix="create it or drop --config") from exc
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {src} is not valid TOML: {exc}") from exc
    for dotted, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return _build(Config, data, "")


def with_engine(config: Config, **changes: Any) -> Config:
    return replace(config, engine=replace(config.engine, **changes))
