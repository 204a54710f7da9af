"""Named model sets ("presets") that ``assistant models pull NAME`` downloads into a bundle.

A preset names a speech encoder (with a CTC head, so it can draft transcripts) and an
instruct LLM on the Hugging Face Hub, plus the prompt format the pair is used with. Pulling
one writes an ordinary bundle (see :mod:`assistant.bundle`) to ``<data_dir>/bundles/<name>``:

    <data_dir>/bundles/<name>/manifest.json
    <data_dir>/bundles/<name>/encoder/   snapshot of the encoder repo (weights, config, preprocessor)
    <data_dir>/bundles/<name>/llm/       snapshot of the LLM repo (weights, config, tokenizer, chat template)

A pulled bundle serves at once: every preset's encoder has a CTC head (English characters), so the
pull writes a text-input ctc bridge (engine/bridge.py), which has no trained parameters: the transcript
is the encoder's own CTC reading and the LLM writes the reply. Personalized alignment then trains the
user's bridge on top of it, as on any bundle.

The download goes to ``<name>.partial`` next to the final directory and is renamed only when
every component is complete and the manifest is written, so a failed or interrupted pull never
leaves a directory that looks like a bundle (running ``pull`` again resumes the partial one).

No torch / transformers / huggingface_hub import at module level: the CLI imports this module
to print ``assistant models list`` quickly; ``huggingface_hub`` is imported by :func:`pull`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from assistant.bundle import (
    MANIFEST_NAME,
    WEIGHT_SUFFIXES,
    BundleManifest,
    ComponentSpec,
    PromptFormat,
    fingerprint,
    load_bundle,
    save_manifest,
)
from assistant.config import demo_bundle_dir
from assistant.errors import ModelFilesError, NetworkError

DEFAULT_PRESET = "wav2vec2-base-qwen2.5-0.5b"
DEFAULT_ENDPOINT = "https://huggingface.co"
PARTIAL_SUFFIX = ".partial"
_OLD_SUFFIX = ".old"
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's truthy env values

NOTE_NO_BRIDGE = "no trained bridge yet: run personalized alignment"
NOTE_NOISE = "random weights: output is noise"
NOTE_UNREADABLE = "unreadable manifest"

# Weights: safetensors are preferred. ``pull`` looks at the repo's file list and downloads
# ``*.safetensors`` when the repo has any, otherwise the PyTorch pickles (``pytorch_model*.bin``);
# when the listing cannot be read both patterns are used. The loaders (transformers'
# from_pretrained) read model.safetensors first when both exist.
SAFETENSORS_PATTERNS = ("*.safetensors", "*.safetensors.index.json")
PYTORCH_BIN_PATTERNS = ("pytorch_model*.bin", "pytorch_model.bin.index.json")
WEIGHT_PATTERNS = SAFETENSORS_PATTERNS + PYTORCH_BIN_PATTERNS

# Everything besides weights that from_pretrained needs for models, tokenizers, feature
# extractors and chat templates. No TF/Flax/ONNX weights, READMEs or training leftovers.
ENCODER_FILE_PATTERNS = (
    "config.json",
    "preprocessor_config.json",
    "feature_extractor_config.json",
    "tokenizer_config.json",
    "vocab.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
LLM_FILE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "chat_template.jinja",
)


def allow_patterns(component: str, repo_files: Iterable[str] | None = None) -> list[str]:
    """``snapshot_download`` allow patterns for ``component`` ("encoder" or "llm").

    With ``repo_files`` (the repo's file names) only one weight format is picked: safetensors
    when the repo has any, else ``pytorch_model*.bin``. Without it both weight patterns are
    returned (safetensors is what gets loaded when both end up on disk).
    """
    if component == "encoder":
        files = list(ENCODER_FILE_PATTERNS)
    elif component == "llm":
        files = list(LLM_FILE_PATTERNS)
    else:
        raise ValueError(f"unknown component {component!r}; allowed: 'encoder', 'llm'")
    if repo_files is None:
        return files + list(WEIGHT_PATTERNS)
    names = list(repo_files)
    if any(n.endswith(".safetensors") for n in names):
        return files + list(SAFETENSORS_PATTERNS)
    return files + list(PYTORCH_BIN_PATTERNS)


# Speech prompt for instruct LLMs: the transcript is drafted after a plain-text instruction and
# the speech embeddings; the reply uses the tokenizer's chat template. Qwen has no bos token.
# CTC-fine-tuned wav2vec2/HuBERT spell in upper case, so their drafts and readings are lower-cased.
# The transcript is the CTC reading (transcript_source "ctc"): the bridge pull writes has nothing the
# LLM was trained to read, and a reading rewritten by an LLM that never saw the speech only drifts.
_QWEN_PROMPT = PromptFormat(
    instruction="Transcribe the speech.",
    separator="\nTranscript:",
    speech_bos=False,
    transcript_end=None,
    transcript_tokens_per_s=5.0,
    response="chat",
    system_prompt="You are a helpful voice assistant. Answer in one or two short sentences.",
    response_max_new_tokens=64,
    history_turns=3,
    draft_case="lower",
    transcript_source="ctc",
)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    encoder_repo: str
    encoder_revision: str
    llm_repo: str
    llm_revision: str
    prompt: PromptFormat
    approx_download_mb: int
    notes: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="wav2vec2-base-qwen2.5-0.5b",
            description="wav2vec2-base CTC (LibriSpeech 960h) + Qwen2.5-0.5B-Instruct; default, fits a Jetson Orin Nano",
            encoder_repo="facebook/wav2vec2-base-960h",
            encoder_revision="main",
            llm_repo="Qwen/Qwen2.5-0.5B-Instruct",
            llm_revision="main",
            prompt=_QWEN_PROMPT,
            approx_download_mb=1400,  # encoder ~380 MB safetensors, LLM ~990 MB bf16 + ~10 MB tokenizer
            notes="95M-parameter encoder (768-dim, 50 frames/s); English read speech; CTC drafts upper case",
        ),
        Preset(
            name="hubert-large-qwen2.5-0.5b",
            description="HuBERT-large CTC (LibriSpeech 960h) + Qwen2.5-0.5B-Instruct; more robust, slower encoder",
            encoder_repo="facebook/hubert-large-ls960-ft",
            encoder_revision="main",
            llm_repo="Qwen/Qwen2.5-0.5B-Instruct",
            llm_revision="main",
            prompt=_QWEN_PROMPT,
            approx_download_mb=2300,  # encoder ~1.26 GB fp32 (pytorch_model.bin), LLM ~1 GB
            notes="316M-parameter encoder (1024-dim, 50 frames/s); English read speech; CTC drafts upper case",
        ),
    )
}


# --------------------------------------------------------------------------- pull


def _offline_env() -> str | None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in _TRUE:
            return var
    return None


def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _connect_target(endpoint: str) -> tuple[str, int, str]:
    """(host, port, what) that must accept a TCP connection: the hub, or the proxy in front of it."""
    url = urllib.parse.urlsplit(endpoint)
    if not url.hostname:
        raise NetworkError(f"HF_ENDPOINT={endpoint!r} is not a URL", fix="set it to e.g. https://huggingface.co")
    host = url.hostname
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        proxy = urllib.request.getproxies().get(url.scheme)
        if proxy and not urllib.request.proxy_bypass(host):
            purl = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            if purl.hostname:
                return purl.hostname, purl.port or (443 if purl.scheme == "https" else 80), f"proxy for {host}"
    except Exception:  # proxy settings are best effort; fall back to the direct check
        pass
    return host, port, "model hub"


def _offline_fix(name: str, data_dir: Path) -> str:
    return (
        f"run 'assistant models pull {name}' on a machine with internet and copy the directory "
        f"{data_dir / 'bundles' / name} over to the same place here, or place the encoder and LLM "
        "model directories yourself and write a manifest.json next to them (see docs/ARCHITECTURE.md, 'Bundles')"
    )


def check_connectivity(name: str, data_dir: Path, timeout_s: float = 10.0) -> None:
    """Raise NetworkError within about ``timeout_s`` unless the hub (or its proxy) accepts TCP."""
    var = _offline_env()
    if var:
        raise NetworkError(
            f"cannot pull preset {name}: offline mode is on ({var}={os.environ[var]})",
            fix=f"unset {var} to download, or {_offline_fix(name, data_dir)}",
        )
    host, port, what = _connect_target(_endpoint())
    result: dict[str, BaseException | None] = {}

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            result["error"] = None
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            result["error"] = exc

    # getaddrinfo has no timeout of its own, so the whole attempt runs in a daemon thread.
    worker = threading.Thread(target=attempt, name="hub-connectivity-check", daemon=True)
    worker.start()
    worker.join(timeout_s + 0.5)
    if "error" not in result:
        cause: str = f"no answer within {timeout_s:g} s"
    elif result["error"] is None:
        return
    else:
        exc = result["error"]
        if isinstance(exc, socket.gaierror):
            cause = f"cannot resolve host name ({exc.strerror or exc})"
        elif isinstance(exc, ConnectionRefusedError):
            cause = "connection refused"
        elif isinstance(exc, (socket.timeout, TimeoutError)):
            cause = f"no answer within {timeout_s:g} s"
        else:
            cause = f"{type(exc).__name__}: {exc}"
    raise NetworkError(
        f"cannot pull preset {name}: the {what} {host}:{port} is unreachable ({cause})",
        fix=_offline_fix(name, data_dir),
    )


def _is_complete(model_dir: Path) -> bool:
    if not (model_dir / "config.json").is_file():
        return False
    return any(p.is_file() and p.suffix in WEIGHT_SUFFIXES for p in model_dir.iterdir())


def _hub_call(what: str, repo: str, revision: str, name: str, data_dir: Path, fn: Callable[[], Any]) -> Any:
    """Run a huggingface_hub call, turning its errors into NetworkError / ModelFilesError."""
    from huggingface_hub.utils import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo}@{revision}"
    try:
        return fn()
    except GatedRepoError as exc:
        raise ModelFilesError(
            f"cannot {what} {where}: the repository is gated",
            fix="accept its terms on the hub and log in with 'hf auth login', or pick another preset",
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelFilesError(
            f"cannot {what} {where}: repository not found on {_endpoint()} (or private)",
            fix="check HF_ENDPOINT and the preset's repo name, or log in if it is private",
        ) from exc
    except RevisionNotFoundError as exc:
        raise ModelFilesError(f"cannot {what} {where}: revision {revision!r} not found") from exc
    except OfflineModeIsEnabled as exc:
        raise NetworkError(
            f"cannot {what} {where}: offline mode is on (HF_HUB_OFFLINE)", fix=_offline_fix(name, data_dir)
        ) from exc
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        raise NetworkError(
            f"cannot {what} {where}: the hub answered HTTP {status}: {str(exc).splitlines()[0]}",
            fix="try again later; partial downloads resume",
        ) from exc
    except LocalEntryNotFoundError as exc:  # huggingface_hub's "cannot reach the hub" while downloading
        raise NetworkError(
            f"cannot {what} {where}: the hub became unreachable during the download "
            f"({str(exc).splitlines()[0]})",
            fix="run the pull again (it resumes), or " + _offline_fix(name, data_dir),
        ) from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise ModelFilesError(
                f"cannot {what} {where}: no space left in {data_dir}",
                fix="free some disk space or set ASSISTANT_DATA_DIR to a larger disk",
            ) from exc
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise ModelFilesError(f"cannot {what} {where}: cannot write to {data_dir}: {exc}") from exc
        raise NetworkError(f"cannot {what} {where}: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        # Transport errors of the hub's HTTP client (httpx / requests) that escaped huggingface_hub.
        module = type(exc).__module__ or ""
        if module.split(".")[0] in ("httpx", "httpx2", "requests", "urllib3") or "Xet" in type(exc).__name__:
            raise NetworkError(
                f"cannot {what} {where}: {type(exc).__name__}: {exc}", fix="check the connection and try again"
            ) from exc
        raise


def pull(
    name: str,
    data_dir: Path,
    *,
    timeout_s: float = 10.0,
    progress: Callable[[str], Any] = print,
    force: bool = False,
) -> Path:
    """Download preset ``name`` into ``<data_dir>/bundles/<name>`` and return that bundle path.

    An already pulled bundle (its manifest loads) is returned as is without network unless
    ``force``. Raises ModelFilesError for an unknown preset or bad files, NetworkError when the
    hub cannot be reached (checked first, within about ``timeout_s`` seconds).
    """
    preset = PRESETS.get(name)
    if preset is None:
        raise ModelFilesError(
            f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}",
            fix="see 'assistant models list'",
        )
    data_dir = Path(data_dir).expanduser()
    bundles = data_dir / "bundles"
    final = bundles / name
    partial = bundles / (name + PARTIAL_SUFFIX)

    if not force and (final / MANIFEST_NAME).is_file():
        try:
            load_bundle(final)
        except ModelFilesError as exc:
            progress(f"{final} is broken ({exc.problem}); pulling again")
        else:
            progress(f"{name} is already pulled: {final}")
            return final

    check_connectivity(name, data_dir, timeout_s)

    from huggingface_hub import HfApi, snapshot_download

    endpoint = _endpoint()
    api = HfApi(endpoint=endpoint)
    partial.mkdir(parents=True, exist_ok=True)
    (partial / MANIFEST_NAME).unlink(missing_ok=True)  # a stale one would make the partial look done
    components: dict[str, tuple[str, str, str]] = {}  # label -> (repo, revision, commit)
    for label, repo, revision in (
        ("encoder", preset.encoder_repo, preset.encoder_revision),
        ("llm", preset.llm_repo, preset.llm_revision),
    ):
        info = _hub_call(
            "look up",
            repo,
            revision,
            name,
            data_dir,
            lambda repo=repo, revision=revision: api.model_info(repo, revision=revision, timeout=max(timeout_s, 10.0)),
        )
        commit = info.sha or revision
        repo_files = [s.rfilename for s in (info.siblings or [])] or None
        patterns = allow_patterns(label, repo_files)
        target = partial / label
        progress(f"downloading {label} {repo}@{revision} ({commit[:12]}) to {target}")
        _hub_call(
            "download",
            repo,
            revision,
            name,
            data_dir,
            lambda repo=repo, commit=commit, target=target, patterns=patterns: snapshot_download(
                repo,
                revision=commit,  # the commit looked up above, so a push in between cannot mix versions
                local_dir=target,
                allow_patterns=patterns,
                endpoint=endpoint,
                etag_timeout=max(timeout_s, 10.0),
            ),
        )
        if not _is_complete(target):
            raise ModelFilesError(
                f"download of {repo}@{revision} into {target} is incomplete: config.json or weights missing",
                fix=f"run 'assistant models pull {name}' again; if it persists the repository layout changed",
            )
        shutil.rmtree(target / ".cache", ignore_errors=True)  # huggingface_hub's resume metadata
        components[label] = (repo, revision, commit)

    progress("fingerprinting weights")
    specs = {
        label: ComponentSpec(path=label, id=fingerprint(partial / label, f"{repo}@{revision}"))
        for label, (repo, revision, _commit) in components.items()
    }
    progress("writing the zero-shot ctc bridge (the encoder's own CTC head, no training)")
    write_zero_shot_bridge(partial, specs["encoder"].id, specs["llm"].id)
    manifest = BundleManifest(
        name=name,
        encoder=specs["encoder"],
        llm=specs["llm"],
        prompt=preset.prompt,
        bridges={"ctc": ZERO_SHOT_BRIDGE},
        default_bridge="ctc",
        description=preset.description,
        is_noise=False,
        build={
            "preset": name,
            "pulled_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "endpoint": endpoint,
            "encoder_repo": preset.encoder_repo,
            "encoder_revision": preset.encoder_revision,
            "encoder_commit": components["encoder"][2],
            "llm_repo": preset.llm_repo,
            "llm_revision": preset.llm_revision,
            "llm_commit": components["llm"][2],
        },
    )
    save_manifest(partial, manifest)

    # Swap in atomically: the final name only ever points at a complete bundle.
    old = bundles / (name + _OLD_SUFFIX)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)
    progress(f"pulled {name} to {final}: it serves with the zero-shot ctc bridge; personalized alignment "
             "trains the user's own")
    return final


ZERO_SHOT_BRIDGE = "bridge/ctc"


def write_zero_shot_bridge(root: Path, encoder_id: str, llm_id: str) -> None:
    """The text-input ctc bridge of a pulled bundle: it needs the encoder's CTC head and nothing trained."""
    def config(label: str) -> dict[str, Any]:
        try:
            data = json.loads((root / label / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelFilesError(f"{root / label / 'config.json'} is unreadable: {exc}") from exc
        return data if isinstance(data, dict) else {}

    enc, llm = config("encoder"), config("llm")
    if not any(str(a).endswith("ForCTC") for a in enc.get("architectures") or []):
        raise ModelFilesError(f"the pulled encoder in {root / 'encoder'} has no CTC head "
                              f"(architectures {enc.get('architectures')}): no bridge can serve it untrained",
                              fix="pick a preset whose encoder is fine-tuned for CTC")
    from assistant.engine.checkpoint import new_bridge, save_bridge

    bridge = new_bridge("ctc", encoder_dim=int(enc.get("hidden_size", 1)), llm_dim=int(llm.get("hidden_size", 1)),
                        encoder_id=encoder_id, llm_id=llm_id, hidden_dim=0,
                        ctc_blank_id=int(enc.get("pad_token_id") or 0), version="zero-shot-ctc", text_input=True)
    save_bridge(bridge, root / ZERO_SHOT_BRIDGE,
                training={"note": "text input: no trained parameters; the encoder's own CTC head reads"})


# --------------------------------------------------------------------------- list


def _bundle_row(name: str, kind: str, path: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "kind": kind, "path": str(path), "pulled": True, "bridges": [], "note": ""}
    try:
        bundle = load_bundle(path)
    except Exception as exc:  # noqa: BLE001 - a broken manifest must not break the listing
        reason = str(exc) if isinstance(exc, ModelFilesError) else f"{type(exc).__name__}: {exc}"
        row["note"] = f"{NOTE_UNREADABLE}: {reason}"
        return row
    m = bundle.manifest
    row["bridges"] = sorted(m.bridges)
    notes = []
    if m.is_noise:
        notes.append(NOTE_NOISE)
    if not m.bridges:
        notes.append(NOTE_NO_BRIDGE)
    elif m.default_bridge:
        notes.append(f"serves with its {m.default_bridge} bridge")
    from assistant.pretrained.sources import pointer_note

    pretrained = [n for n in (pointer_note(bundle.encoder_dir), pointer_note(bundle.llm_dir)) if n]
    if pretrained:
        notes.append("pretrained: " + ", ".join(pretrained))
    if kind != "preset" and m.description:
        notes.append(m.description)
    row["note"] = "; ".join(notes)
    return row


def list_bundles(data_dir: Path) -> list[dict[str, Any]]:
    """Rows for ``assistant models list``: presets (pulled or not), local bundles, the demo bundle.

    Each row: ``name``, ``kind`` ("preset" | "bundle" | "demo"), ``path`` (str or None),
    ``pulled`` (bool), ``bridges`` (kinds), ``note``. Never raises for a broken bundle.
    """
    bundles = Path(data_dir).expanduser() / "bundles"
    rows: list[dict[str, Any]] = []
    for preset in PRESETS.values():
        path = bundles / preset.name
        if (path / MANIFEST_NAME).is_file():
            rows.append(_bundle_row(preset.name, "preset", path))
        else:
            default = " (default)" if preset.name == DEFAULT_PRESET else ""
            rows.append(
                {
                    "name": preset.name,
                    "kind": "preset",
                    "path": None,
                    "pulled": False,
                    "bridges": [],
                    "note": f"not pulled{default}: assistant models pull {preset.name} "
                    f"(~{preset.approx_download_mb} MB)",
                }
            )
    try:
        entries = sorted(bundles.iterdir()) if bundles.is_dir() else []
    except OSError:
        entries = []
    for entry in entries:
        if entry.name in PRESETS or entry.name.endswith((PARTIAL_SUFFIX, _OLD_SUFFIX)):
            continue
        if entry.is_dir() and (entry / MANIFEST_NAME).is_file():
            rows.append(_bundle_row(entry.name, "bundle", entry))
    demo = demo_bundle_dir()
    if (demo / MANIFEST_NAME).is_file():
        name = "demo"
        try:
            name = str(json.loads((demo / MANIFEST_NAME).read_text(encoding="utf-8")).get("name") or "demo")
        except Exception:  # noqa: BLE001 - _bundle_row reports the problem
            pass
        rows.append(_bundle_row(name, "demo", demo))
    return rows


def format_bundle_table(rows: Iterable[dict[str, Any]]) -> str:
    """Plain aligned text table of ``list_bundles`` rows (NOTE last, unpadded)."""
    header = ("NAME", "KIND", "PULLED", "BRIDGES", "PATH", "NOTE")
    lines = [header] + [
        (
            str(r.get("name", "")),
            str(r.get("kind", "")),
            "yes" if r.get("pulled") else "no",
            ",".join(r.get("bridges") or []) or "-",
            str(r.get("path") or "-"),
            str(r.get("note") or ""),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        ("  ".join(cell.ljust(w) for cell, w in zip(line[:-1], widths)) + "  " + line[-1]).rstrip() for line in lines
    )
