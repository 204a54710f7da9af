"""``assistant models pull NAME``: download a preset's encoder and LLM from the Hugging Face Hub into a
bundle (``<data_dir>/bundles/<name>``), the only code of the project that touches the network.

The presets themselves, the files each component needs and the zero-shot bridge a pulled bundle serves
with are in :mod:`assistant.presets`. The download goes to ``<name>.partial`` and is renamed only when
every component is complete and the manifest is written, so a failed or interrupted pull never leaves a
directory that looks like a bundle (pulling again resumes the partial one). Offline (``HF_HUB_OFFLINE``,
no route to the hub) it fails fast, naming the fix. ``huggingface_hub`` is imported only by ``pull``.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from assistant.bundle import MANIFEST_NAME, WEIGHT_SUFFIXES, BundleManifest, ComponentSpec, fingerprint, load_bundle, \
    save_manifest
from assistant.errors import ModelFilesError, NetworkError
from assistant.presets import (OLD_SUFFIX, PARTIAL_SUFFIX, PRESETS, ZERO_SHOT_BRIDGE, allow_patterns,
                               write_zero_shot_bridge)

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's truthy env values


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
    old = bundles / (name + OLD_SUFFIX)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)
    progress(f"pulled {name} to {final}: it serves with the zero-shot ctc bridge; personalized alignment "
             "trains the user's own")
    return final
