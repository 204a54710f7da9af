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

from assistant.errors import AssistantError
from services.terminal import shown

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
    al.add_argument("--method", help="backprop | zo | embed | embed+backprop | ctc | default")
    al.add_argument("--no-wait", action="store_true", help="start the job and return")
    al.add_argument("--data-dir", metavar="DIR")
    al.set_defaults(func=lambda a: cmd_align(a, config_of))
    br = sub.add_parser("bridges", help="bridge versions: list, activate (rollback), diff")
    bsub = br.add_subparsers(dest="bridges_command", metavar="ACTION", required=True)
    bl = bsub.add_parser("list")
    bl.add_argument("--json", action="store_true")
    ba = bsub.add_parser("activate")
    ba.add_argument("version")
    bd = bsub.add_parser("diff")
    bd.add_argument("a")
    bd.add_argument("b")
    for p in (bl, ba, bd):
        p.add_argument("--data-dir", metavar="DIR")
    bl.set_defaults(func=lambda a: cmd_bridges_list(a, config_of))
    ba.set_defaults(func=lambda a: cmd_bridges_activate(a, config_of))
    bd.set_defaults(func=lambda a: cmd_bridges_diff(a, config_of))


def _client(args, config_of):
    from services.client import DaemonClient

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
        x = sd.rec(int(seconds * 16000), samplerate=16000, channels=1, dtype="float32", device=dev)
        sd.wait()
    except (sd.PortAudioError, ValueError) as exc:  # no such device, none at all, or it refuses 16 kHz mono
        raise AssistantError(f"cannot record from {which}: {exc}", fix=fix) from None
    buf = io.BytesIO()
    sf.write(buf, np.asarray(x)[:, 0], 16000, format="WAV", subtype="PCM_16")
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
    return 0


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
        bar = "#" * int(30 * (job.get("progress") or 0))
        line = f"\r[{bar:<30}] {100 * (job.get('progress') or 0):5.1f}%  {job['state']:<9} step {job.get('step') or 0}"
        if line != last:
            print(line, end="", file=sys.stderr, flush=True)
            last = line
    print(file=sys.stderr)
    m = job.get("metrics") or {}
    if m:
        print(f"user WER {m.get('user_wer_before')} -> {m.get('user_wer_after')}, generic WER "
              f"{m.get('generic_wer_before')} -> {m.get('generic_wer_after')}")
    print(f"job {job['id']}: {job['state']}" + (f" ({job['error']})" if job.get("error") else "")
          + (f", version {job['candidate_version']}" if job.get("candidate_version") else ""))
    return 0 if job["state"] in ("succeeded", "rejected") else 1


def cmd_bridges_list(args, config_of) -> int:
    b = _client(args, config_of).get("/v1/bridges")
    if args.json:
        print(json.dumps(b, indent=2))
        return 0
    for v in b["versions"]:
        mark = "*" if v["version"] == b["active"] else " "
        m = v.get("metrics") or {}
        wer = f"user WER {m['user_wer_after']}" if m.get("user_wer_after") is not None else ""
        print(f"{mark} {v['version']:<12} {v['status']:<9} parent {v.get('parent_version') or '-':<10} "
              f"{(v.get('created_at') or '')[:19]}  {wer}")
    return 0


def cmd_bridges_activate(args, config_of) -> int:
    r = _client(args, config_of).post(f"/v1/bridges/{args.version}/activate")
    print(f"active bridge: {r['active']} (was {r['previous']})")
    return 0


def cmd_bridges_diff(args, config_of) -> int:
    from pathlib import Path

    from assistant.alignment.registry import diff_versions

    cfg = config_of(args)
    versions = {v["version"]: v for v in _client(args, config_of).get("/v1/bridges")["versions"]}
    paths = []
    for name in (args.a, args.b):
        if name not in versions or not versions[name].get("path"):
            raise AssistantError(f"bridge version {name} is unknown or has no local path")
        p = Path(versions[name]["path"])
        paths.append(p if p.is_absolute() else cfg.data_path / p)
    d = diff_versions(*paths)
    print(json.dumps({k: d[k] for k in ("a", "b", "total_relative_change")}, indent=2, default=str))
    for name, change in sorted(d["tensors"].items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {name:<40} {change:.4f}")
    return 0

