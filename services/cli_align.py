"""CLI verbs for personalization, all through the running daemon's API:

    assistant enroll [--file WAV] [--seconds 6] [--device DEV]   read a prompt aloud (or upload a file)
    assistant align [--method M] [--no-wait]                       start a job now, follow its progress
    assistant bridges list | activate VERSION | diff A B          versions, rollback, what changed
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

from assistant.errors import AssistantError
from assistant_services.terminal import shown

TERMINAL = ("succeeded", "rejected", "failed", "cancelled")


def add_commands(sub, config_of) -> None:
    en = sub.add_parser("enroll", help="read an enrollment prompt aloud (or upload a file) to teach your voice")
    en.add_argument("--file", metavar="WAV", help="a recording of the prompt instead of the microphone")
    en.add_argument("--prompt", type=int, help="prompt id (default: the next one not recorded yet)")
    en.add_argument("--text", help="add this sentence as a new prompt first (e.g. with a contact's name)")
    en.add_argument("--seconds", type=float, default=6.0, help="microphone recording length")
    en.add_argument("--device", dest="mic_device", default="", help="microphone (sounddevice name or index)")
    en.add_argument("--data-dir", metavar="DIR")
    en.set_defaults(func=lambda a: cmd_enroll(a, config_of))
    al = sub.add_parser("align", help="personalize the bridge now on your labelled utterances")
    al.add_argument("--method", help="default | ctc | backprop | zo | embed")
    al.add_argument("--no-wait", action="store_true", help="start the job and return")
    al.add_argument("--data-dir", metavar="DIR")
    al.set_defaults(func=lambda a: cmd_align(a, config_of))
    br = sub.add_parser("bridges", help="bridge versions: list, activate (rollback), diff")
    bsub = br.add_subparsers(dest="bridges_command", metavar="ACTION", required=True)
    bl = bsub.add_parser("list")
    bl.add_argument("--json", action="store_true")
    ba = bsub.add_parser("activate")
    ba.add_argument("version")
    bd = bsub.add_parser("diff", help="what changed between two versions (either may be the base version, "
                                      "or 'base')")
    bd.add_argument("a")
    bd.add_argument("b")
    bd.add_argument("--bundle", metavar="DIR", help="the daemon's model bundle, which holds the base version's "
                                                     "bridge (default: the configured one)")
    bd.add_argument("--top", type=int, default=10, help="how many of the most changed tensors to list")
    for p in (bl, ba, bd):
        p.add_argument("--data-dir", metavar="DIR")
    bl.set_defaults(func=lambda a: cmd_bridges_list(a, config_of))
    ba.set_defaults(func=lambda a: cmd_bridges_activate(a, config_of))
    bd.set_defaults(func=lambda a: cmd_bridges_diff(a, config_of))


def _client(args, config_of):
    from assistant_services.client import DaemonClient

    return DaemonClient.from_data_dir(config_of(args).data_path)


def _multipart(path: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"{path}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _record(seconds: float, device: str) -> bytes:
    import io

    import numpy as np
    import soundfile as sf

    from assistant.audio import TARGET_RATE_HZ

    fix = ("list the input devices with `python -m sounddevice` and pass --device N or a part of its name, "
           "or record a file and use --file")
    try:
        import sounddevice as sd
    except OSError as exc:  # the PortAudio library itself is missing
        raise AssistantError(f"cannot use a microphone: {exc}", fix="install libportaudio2, or use --file") from None
    dev = int(device) if device.isdigit() else (device or None)
    which = f"the input device {device!r}" if device else "the default input device"
    try:
        print(f"recording {seconds:.0f} s ... speak now", file=sys.stderr, flush=True)
        x = sd.rec(int(seconds * TARGET_RATE_HZ), samplerate=TARGET_RATE_HZ, channels=1, dtype="float32",
                   device=dev)
        sd.wait()
    except (sd.PortAudioError, ValueError) as exc:  # no such device, none at all, or it refuses 16 kHz mono
        raise AssistantError(f"cannot record from {which}: {exc}", fix=fix) from None
    buf = io.BytesIO()
    sf.write(buf, np.asarray(x)[:, 0], TARGET_RATE_HZ, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def cmd_enroll(args, config_of) -> int:
    c = _client(args, config_of)
    if args.text:
        pid = c.post("/v1/enrollment/prompts", {"text": args.text})["id"]
    elif args.prompt is not None:
        pid = args.prompt
    else:
        todo = [p for p in c.get("/v1/enrollment/prompts")["prompts"] if not p.get("recorded_utterance_id")]
        if not todo:
            raise AssistantError("every enrollment prompt is recorded", fix="add one with --text \"...\"")
        pid = todo[0]["id"]
    prompt = next(p for p in c.get("/v1/enrollment/prompts")["prompts"] if p["id"] == pid)
    print(f'prompt {pid}: "{shown(prompt["text"])}"')
    if args.file:
        with open(args.file, "rb") as f:
            data = f.read()
    else:
        c.post("/v1/quiet", {"seconds": float(args.seconds) + 2.0})  # the daemon's mic hears the prompt too
        try:
            data = _record(args.seconds, args.mic_device)
        finally:
            c.post("/v1/quiet", {"seconds": 0.0})
    body, ctype = _multipart(args.file or "mic.wav", data)
    r = c.request_raw("POST", f"/v1/enrollment/prompts/{pid}/recording", body, ctype)
    print(f"stored as utterance {r['utterance_id']} ({r['duration_s']:.1f} s), labelled with the prompt")
    line = labels_line(c.get("/v1/enrollment/prompts"))
    if line:
        print(line)
    return 0


def labels_line(listing: dict) -> str | None:
    """How far the labels are from a personalization job, from the prompts listing's ``labelled`` and
    ``labels_needed`` (None from a daemon that does not send them)."""
    have, need = listing.get("labelled"), listing.get("labels_needed")
    if not isinstance(have, int) or not isinstance(need, int):
        return None
    have_text = f"{have} labelled utterance" + ("" if have == 1 else "s")
    if have >= need:
        return (f"{have_text}: enough for a personalization job (it needs about {need}); "
                "'assistant align' starts one now")
    return f"{have_text}; a personalization job needs about {need} ({need - have} more)"


def _pct(x) -> str:
    """A word error rate as a percentage with one decimal; "n/a" when there is none (None, NaN)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool) or x != x:
        return "n/a"
    return f"{100 * x:.1f} %"


def progress_line(job: dict) -> str:
    """One line for the progress display: training (steps) or, when ``phase`` is "gating", the quality
    gate's own bar (its progress starts again from 0; ``step`` still counts the training steps done).
    Fixed width, so a shorter line overwrites a longer one."""
    p = min(max(float(job.get("progress") or 0.0), 0.0), 1.0)
    gating = job.get("phase") == "gating"
    done, total = job.get("step") or 0, job.get("total_steps")
    count = f"{done}/{total}" if total else f"{done}"
    detail = f"after {count} steps" if gating else f"step {count}"
    return f"{'gating' if gating else 'training':<8} [{'#' * int(30 * p):<30}] {100 * p:5.1f} %  " \
           f"{job['state']:<9} {detail}".ljust(90)


def outcome_lines(job: dict) -> list[str]:
    """What a finished job did, for the terminal: its WERs before -> after and, for a rejection, the
    gate's reason."""
    m = job.get("metrics") or {}
    lines = []
    if any(m.get(k) is not None for k in ("user_wer_before", "user_wer_after")):
        held = f" on {m['heldout_n']} held-out recordings" if m.get("heldout_n") else ""
        lines.append(f"  your WER     {_pct(m.get('user_wer_before'))} -> {_pct(m.get('user_wer_after'))}{held}")
    if any(m.get(k) is not None for k in ("generic_wer_before", "generic_wer_after")):
        n = f" on {m['generic_n']} generic utterances" if m.get("generic_n") else ""
        lines.append(f"  generic WER  {_pct(m.get('generic_wer_before'))} -> {_pct(m.get('generic_wer_after'))}{n}")
    state, version = job["state"], job.get("candidate_version")
    reason = job.get("error") or m.get("reason")
    if state == "rejected":
        head = f"job {job['id']}: rejected" + (" by the quality gate" if lines else "") \
            + (f": {shown(reason)}" if reason else "")
        tail = [f"version {version} is kept for inspection but cannot be activated"] if version else []
        return [head, *lines, *tail]
    if state == "succeeded":
        return [*lines, f"job {job['id']}: succeeded" + (f", version {version}" if version else "")]
    return [*lines, f"job {job['id']}: {state}" + (f" ({shown(reason)})" if reason else "")]


def cmd_align(args, config_of) -> int:
    c = _client(args, config_of)
    job = c.post("/v1/alignment/jobs", {"method": args.method} if args.method else {})
    print(f"alignment job {job['id']} ({job['method']}) queued")
    if args.no_wait:
        return 0
    last = None
    while job["state"] not in TERMINAL:
        time.sleep(1.0)
        job = c.get(f"/v1/alignment/jobs/{job['id']}")
        line = progress_line(job)
        if line != last:
            print("\r" + line, end="", file=sys.stderr, flush=True)
            last = line
    print(file=sys.stderr)
    for line in outcome_lines(job):
        print(line)
    return 0 if job["state"] == "succeeded" else 1


def cmd_bridges_list(args, config_of) -> int:
    b = _client(args, config_of).get("/v1/bridges")
    if args.json:
        print(json.dumps(b, indent=2))
        return 0
    for v in b["versions"]:
        mark = "*" if v["version"] == b["active"] else " "
        print(f"{mark} {shown(v['version']):<12} {v['status']:<9} parent {shown(v.get('parent_version') or '-'):<10} "
              f"{(v.get('created_at') or '')[:19]}  {wers_text(v.get('metrics') or {})}".rstrip())
    return 0


def wers_text(m: dict) -> str:
    """A version's word error rates as percentages: the gate's user and generic WER after training
    (before -> after for the user's), or a bundle bridge's own dev WER."""
    parts = []
    if m.get("user_wer_after") is not None:
        before = f"{_pct(m['user_wer_before'])} -> " if m.get("user_wer_before") is not None else ""
        parts.append(f"user WER {before}{_pct(m['user_wer_after'])}")
    if m.get("generic_wer_after") is not None:
        parts.append(f"generic WER {_pct(m['generic_wer_after'])}")
    if not parts and m.get("dev_wer") is not None:
        parts.append(f"dev WER {_pct(m['dev_wer'])}")
    return ", ".join(parts)


def cmd_bridges_activate(args, config_of) -> int:
    r = _client(args, config_of).post(f"/v1/bridges/{args.version}/activate")
    print(f"active bridge: {r['active']} (was {r['previous']})")
    return 0


def _daemon_data_dir(cfg) -> Path:
    """The data dir of the daemon the client talks to (its own, else the system service's): trained
    versions' paths are relative to it."""
    from assistant_services.client import SERVICE_DATA_DIR

    own = cfg.data_path
    try:
        if not (own / "daemon.json").is_file() and (SERVICE_DATA_DIR / "daemon.json").is_file():
            return SERVICE_DATA_DIR
    except PermissionError:
        pass
    return own


def _base_bridge_dir(version: str, cfg) -> Path:
    """A base version is a bundle's own bridge (the store keeps its absolute path, which the API does not
    show): the bridge of the configured bundle whose JSON names this version."""
    from assistant.bundle import load_bundle
    from assistant.engine.checkpoint import read_bridge_config

    bundle = load_bundle(cfg.bundle_path())
    for kind in sorted(bundle.manifest.bridges):
        d = bundle.bridge_dir(kind)
        try:
            if read_bridge_config(d).version == version:
                return d
        except AssistantError:
            continue
    raise AssistantError(f"the base version {version} is a model bundle's own bridge, and the bundle "
                         f"{bundle.root} has no bridge {version}",
                         fix="pass the bundle the daemon serves with --bundle DIR")


def _version_dir(name: str, versions: dict[str, dict], cfg, data_dir: Path) -> tuple[str, Path]:
    """(version, its directory) for a name from the command line; "base" is the base version when it is
    not a version's own name and there is one."""
    v = versions.get(name)
    if v is None and name == "base":
        bases = [x for x in versions.values() if x.get("status") == "base"]
        if len(bases) > 1:
            raise AssistantError("there are several base versions: " + ", ".join(shown(x["version"]) for x in bases),
                                 fix="name one of them")
        v = bases[0] if bases else None
    if v is None:
        raise AssistantError(f"bridge version {shown(name)} is unknown",
                             fix="'assistant bridges list' shows the versions")
    if v.get("path"):
        p = Path(v["path"])
        return v["version"], p if p.is_absolute() else data_dir / p
    if v.get("status") == "base":
        return v["version"], _base_bridge_dir(v["version"], cfg)
    raise AssistantError(f"bridge version {shown(name)} has no local path")


_GATE_KEYS = ("accepted", "user_wer_before", "user_wer_after", "generic_wer_before", "generic_wer_after",
              "heldout_n", "generic_n")


def _metric(key: str, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return _pct(value) if "wer" in key.lower() else f"{value:g}"
    text = shown(value)
    return text if len(text) <= 40 else text[:39] + "…"


def diff_summary(d: dict, status: dict[str, str] | None = None, top: int = 10) -> list[str]:
    """``registry.diff_versions``'s result as lines for the terminal: both versions (status, kind,
    parent, date), their metrics side by side, the gate's reasons, and the most changed tensors."""
    status = status or {}
    a, b = d["a"], d["b"]
    na, nb = shown(a["version"]), shown(b["version"])
    rows = [("status", status.get(a["version"], "-"), status.get(b["version"], "-")),
            ("kind", a["kind"], b["kind"]),
            ("parent", shown(a.get("parent_version") or "-"), shown(b.get("parent_version") or "-")),
            ("created", (a.get("created_at") or "-")[:19], (b.get("created_at") or "-")[:19])]
    ma, mb = a.get("metrics") or {}, b.get("metrics") or {}
    scalar = lambda m: {k for k, v in m.items() if k != "reason" and not isinstance(v, (dict, list))}  # noqa: E731
    keys = scalar(ma) | scalar(mb)
    for k in [*(k for k in _GATE_KEYS if k in keys), *sorted(keys - set(_GATE_KEYS))]:
        rows.append((k.replace("_", " "), _metric(k, ma.get(k)), _metric(k, mb.get(k))))
    w = max(14, len(na) + 2, *(len(x) + 2 for _, x, _ in rows))
    lines = [f"{'':<22}{na:<{w}}{nb}", *(f"  {label:<20}{x:<{w}}{y}" for label, x, y in rows)]
    for side, m in ((na, ma), (nb, mb)):
        if m.get("reason"):
            lines.append(f"gate on {side}: {shown(m['reason'])}")
    for side, info in ((na, a), (nb, b)):
        if not info.get("intact", True):
            lines.append(f"warning: {side}'s weights do not match the sha256 in its bridge.json")
    compared = d.get("compared", len(d["tensors"]))
    lines.append(f"weights: {nb} differs from {na} by {_pct(d['total_relative_change'])} (relative L2) over the "
                 f"{compared} tensors both have" if compared else "weights: no tensor of the same shape in both")
    sizes = d.get("sizes") or {}
    for label, names in ((f"only in {nb}", d.get("only_in_b") or []), (f"only in {na}", d.get("only_in_a") or []),
                         ("shape changed", d.get("shape_changed") or [])):
        if names:
            values = sum(sizes.get(n, 0) for n in names)
            groups: dict[str, list[str]] = {}
            for n in names:  # "adapter.down.weight", "adapter.mix.bias", ... -> "adapter.* (2)"
                groups.setdefault(n.split(".")[0], []).append(n)
            parts = [g[0] if len(g) == 1 else f"{prefix}.* ({len(g)})" for prefix, g in groups.items()]
            lines.append(f"  {label}: {', '.join(parts)}" + (f"; {values:,} values" if values else ""))
    changed = sorted(d["tensors"].items(), key=lambda kv: -kv[1])[:max(top, 0)]
    if changed:
        lines.append("most changed tensors (relative L2 change):")
        width = max(len(n) for n, _ in changed)
        lines += [f"  {n:<{width}}  {_pct(c):>9}" for n, c in changed]
    return lines


def cmd_bridges_diff(args, config_of) -> int:
    from assistant.alignment.registry import diff_versions

    cfg = config_of(args)
    listing = _client(args, config_of).get("/v1/bridges")
    versions = {v["version"]: v for v in listing["versions"]}
    data_dir = _daemon_data_dir(cfg)
    (va, pa), (vb, pb) = (_version_dir(n, versions, cfg, data_dir) for n in (args.a, args.b))
    d = diff_versions(pa, pb)
    status = {v: versions[v]["status"] + (", active" if v == listing.get("active") else "") for v in (va, vb)}
    for line in diff_summary(d, status, top=args.top):
        print(line)
    return 0
