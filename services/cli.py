"""``assistant`` command line.

Only argparse and the standard library at import time: ``assistant --help`` must answer without
importing torch or transformers. Each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from assistant import __version__
from assistant.errors import AssistantError
from assistant_services.terminal import shown

log = logging.getLogger("assistant")


def _quiet_libraries() -> None:
    # Progress bars and library chatter would bury the one line the user asked for.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _config(args: argparse.Namespace):
    from assistant.config import load_config

    overrides = {
        "data_dir": getattr(args, "data_dir", None),
        "engine.bundle": getattr(args, "bundle", None),
        "engine.bridge_kind": getattr(args, "bridge_kind", None),
        "engine.device": getattr(args, "device", None),
    }
    if getattr(args, "no_speculative", False):
        overrides["engine.speculative"] = False
    return load_config(args.config, **overrides)


def _engine(args: argparse.Namespace):
    _quiet_libraries()
    cfg = _config(args)
    bundle = cfg.bundle_path()
    if not (bundle / "manifest.json").is_file():
        from assistant.errors import ModelFilesError

        raise ModelFilesError(f"no model bundle at {bundle}",
                              fix=f"build the tiny development bundle with 'assistant models tiny {bundle}', "
                                  "or pass --bundle DIR")
    import torch

    if cfg.engine.threads:
        torch.set_num_threads(cfg.engine.threads)
    from assistant.engine.engine import Engine

    engine = Engine.from_bundle(bundle, bridge_kind=cfg.engine.bridge_kind or None, device=cfg.engine.device,
                                speculative=cfg.engine.speculative, data_dir=cfg.data_path)
    from assistant_services.cli_bridge import serve_active_bridge

    serve_active_bridge(cfg, engine)
    return cfg, engine


def cmd_run_files(args: argparse.Namespace) -> int:
    """transcribe / respond: one turn per file; bad files get one error line each, exit 2."""
    from assistant.audio import load_audio

    cfg, engine = _engine(args)
    respond = args.command == "respond"
    failed = 0
    for name in args.files:
        try:
            audio = load_audio(name, max_duration_s=cfg.audio.max_duration_s, min_duration_s=cfg.audio.min_duration_s)
            engine.reset_history()  # each file is its own conversation: same file, same answer
            turn = engine.run(audio.samples, respond=respond)
        except AssistantError as exc:
            failed += 1
            print(f"error: {shown(name)}: {shown(exc, lines=True)}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": name, "error": str(exc)}), flush=True)
            continue
        if args.json:
            row = {"file": name, **turn.to_json()}
            if not respond:
                row.pop("response")
            print(json.dumps(row), flush=True)
        elif respond:
            t = turn.timings
            act = turn.action
            action = f"  action:    {act.name} {json.dumps(act.slots)} (not done here: the daemon, " \
                     f"'assistant serve', acts)\n" if act else ""
            print(f"{shown(name)}\n  you said:  {shown(turn.transcript)}\n  assistant: {shown(turn.response)}\n"
                  f"{action}"
                  f"  timings:   encoder {t.encoder_s:.3f} s, bridge {t.bridge_s:.3f} s, transcript "
                  f"{t.transcript_s:.3f} s, response {t.response_s:.3f} s (bridge {turn.bridge_version})", flush=True)
        else:
            print(f"{shown(name)}: {shown(turn.transcript)}" if len(args.files) > 1 else shown(turn.transcript),
                  flush=True)
    return 2 if failed else 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from assistant.presets import format_bundle_table, list_bundles

    rows = list_bundles(_config(args).data_path)
    print(json.dumps(rows, indent=2) if args.json else format_bundle_table(rows))
    return 0


def cmd_models_tiny(args: argparse.Namespace) -> int:
    _quiet_libraries()
    from assistant.modelgen import build_bundle

    path = build_bundle(args.dir, shape=args.shape, chat=args.chat, seed=args.seed)
    print(f"built a {args.shape} random-weight bundle in {path} (its output is noise: for tests and development)")
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    from assistant.hub import pull

    path = pull(args.preset, _config(args).data_path, timeout_s=args.timeout, force=args.force)
    print(f"pulled {args.preset} into {path}; it has no trained bridge yet: run personalized alignment")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    cfg = _config(args)
    print(json.dumps({**asdict(cfg), "effective": {"data_dir": str(cfg.data_path),
                                                   "bundle": str(cfg.bundle_path())}}, indent=2))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    _quiet_libraries()
    from assistant.config import load_config

    overrides = {"data_dir": args.data_dir, "engine.bundle": args.bundle, "api.host": args.host,
                 "api.port": args.port}
    if args.source:
        kind, _, path = args.source.partition(":")
        overrides["source.kind"] = kind
        if kind == "file":
            overrides["source.path"] = path
    cfg = load_config(args.config, **overrides)
    from assistant_services.daemon import serve

    return serve(cfg, announce=lambda line: print(line, file=sys.stderr, flush=True))


def _client(args: argparse.Namespace):
    from assistant_services.client import DaemonClient

    return DaemonClient.from_data_dir(_config(args).data_path)


def cmd_status(args: argparse.Namespace) -> int:
    st = _client(args).get("/v1/status")
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        job = st.get("running_job")
        job_text = f"{job['id']} {job['state']}" if job else "none"
        print(f"up {st['uptime_s']:.0f} s, source {st['source']['kind']} ({st['source']['state']}), queue "
              f"{st['queue_depth']} ({st['queue_bounded']} of at most {st['queue_max']} live), "
              f"bridge {st['serving_bridge']}, idle {st['idle_s']:.0f} s, job {job_text}")
        words = st.get("user_words") or []
        if words:
            print(f"your words it listens for: {shown(', '.join(words))}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    params = {"limit": args.limit}
    if args.search:
        params["q"] = args.search
    if args.labelled:
        params["has_label"] = "true"
    page = _client(args).get("/v1/utterances", params=params)
    if args.json:
        print(json.dumps(page, indent=2))
        return 0
    for u in page["utterances"]:
        label = f"  [label: {shown(u['label']['text'])}]" if u.get("label") else ""
        reply = f"\n{'':>8}-> {shown(u['response'])}" if u.get("response") else ""
        print(f"{u['id']:>6}  {u['created_at'][:19]}  {u['status']:<10} {shown(u.get('transcript') or '')}{label}"
              f"{reply}")
    print(f"({len(page['utterances'])} of {page['total']})")
    return 0


def cmd_correct(args: argparse.Namespace) -> int:
    body = {"confirm": True} if args.confirm else {"label": args.text}
    if not args.confirm and not args.text:
        from assistant.errors import AssistantError

        raise AssistantError("give the correct text, or --confirm", fix='assistant correct ID "what I said"')
    u = _client(args).patch(f"/v1/utterances/{args.id}", body)
    print(f"utterance {u['id']}: label '{shown(u['label']['text'])}' ({u['label']['source']})")
    return 0


def cmd_timers(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.timers_command == "cancel":
        t = client.delete(f"/v1/timers/{args.id}")
        print(f"{t['kind']} {t['id']} cancelled")
        return 0
    if args.timers_command == "stop":
        print("silenced" if client.post("/v1/timers/stop")["was_ringing"] else "nothing was ringing")
        return 0
    page = client.get("/v1/timers", params={"history": "true"} if args.all else None)
    if args.json:
        print(json.dumps(page, indent=2))
        return 0
    for t in page["timers"]:
        what = t["kind"] + (f" '{shown(t['label'])}'" if t.get("label") else "")
        when = f"at {t['time_of_day']}" + (f" ({t['repeat']})" if t.get("repeat") else "") if t.get("time_of_day") \
            else f"{t['duration_s']:.0f} s"
        left = f", {t['remaining_s']:.0f} s left" if t.get("remaining_s") is not None else ""
        print(f"{t['id']:>5}  {what:<22} {when:<24} {t['state']:<9} due {t['due_at'][:19]}{left}")
    if not page["timers"]:
        print("no timers or alarms" + ("" if args.all else " set"))
    if page.get("ringing"):
        print("ringing now: 'assistant timers stop' silences it")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="assistant", description="On-device personal voice assistant.")
    p.add_argument("--version", action="version", version=f"assistant {__version__}")
    p.add_argument("--config", metavar="FILE", help="TOML config (default: $ASSISTANT_CONFIG, "
                   "/etc/assistant/config.toml, $XDG_CONFIG_HOME/assistant/config.toml)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def engine_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("files", nargs="+", metavar="FILE", help="audio files (WAV, FLAC, OGG; any rate/channels)")
        sp.add_argument("--json", action="store_true", help="one JSON object per file, one per line")
        sp.add_argument("--bundle", metavar="DIR", help="model bundle (default: the configured one, else the shipped one)")
        sp.add_argument("--bridge-kind", choices=["conv", "ctc"], help="which bridge of the bundle to use")
        sp.add_argument("--device", help="auto, cpu, cuda, cuda:N")
        sp.add_argument("--no-speculative", action="store_true", help="plain greedy transcript decoding")
        sp.add_argument("--data-dir", metavar="DIR", help="data directory")
        sp.set_defaults(func=cmd_run_files)

    engine_opts(sub.add_parser("transcribe", help="print the transcript of each file"))
    engine_opts(sub.add_parser("respond", help="print the transcript, response and timings of each file"))

    models = sub.add_parser("models", help="list, build or fetch model bundles")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ml = msub.add_parser("list", help="presets and bundles, and whether each has a trained bridge")
    ml.add_argument("--json", action="store_true")
    ml.add_argument("--data-dir", metavar="DIR")
    ml.set_defaults(func=cmd_models_list)
    mt = msub.add_parser("tiny", help="build a tiny random-weight bundle (output is noise; for tests/dev)")
    mt.add_argument("dir", metavar="DIR")
    mt.add_argument("--shape", choices=["tiny", "preset"], default="tiny",
                    help="preset: random weights shaped like HuBERT-base + Qwen2.5-0.5B (for speed tests)")
    mt.add_argument("--chat", action="store_true", help="give the LLM a chat template (tests the chat path)")
    mt.add_argument("--seed", type=int, default=0)
    mt.set_defaults(func=cmd_models_tiny)
    mp = msub.add_parser("pull", help="download a preset's encoder and LLM (needs internet)")
    mp.add_argument("preset")
    mp.add_argument("--data-dir", metavar="DIR")
    mp.add_argument("--force", action="store_true", help="download again even if present")
    mp.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the model hub")
    mp.set_defaults(func=cmd_models_pull)

    sv = sub.add_parser("serve", help="run the daemon: microphone -> VAD -> engine, store, REST API")
    sv.add_argument("--data-dir", metavar="DIR")
    sv.add_argument("--bundle", metavar="DIR")
    sv.add_argument("--source", metavar="SRC", help="mic | file:PATH | none (overrides source.kind/path)")
    sv.add_argument("--host")
    sv.add_argument("--port", type=int)
    sv.set_defaults(func=cmd_serve)

    st = sub.add_parser("status", help="the running daemon's state (through its API)")
    st.add_argument("--json", action="store_true")
    st.add_argument("--data-dir", metavar="DIR")
    st.set_defaults(func=cmd_status)
    hi = sub.add_parser("history", help="recent utterances (through the daemon's API)")
    hi.add_argument("--limit", type=int, default=20)
    hi.add_argument("--search", metavar="TEXT")
    hi.add_argument("--labelled", action="store_true", help="only utterances with a label")
    hi.add_argument("--json", action="store_true")
    hi.add_argument("--data-dir", metavar="DIR")
    hi.set_defaults(func=cmd_history)
    co = sub.add_parser("correct", help="correct (or --confirm) the transcript of an utterance")
    co.add_argument("id", type=int)
    co.add_argument("text", nargs="?")
    co.add_argument("--confirm", action="store_true", help="the transcript was right")
    co.add_argument("--data-dir", metavar="DIR")
    co.set_defaults(func=cmd_correct)

    tm = sub.add_parser("timers", help="timers and alarms: list, cancel, silence (through the daemon's API)")
    tm.add_argument("--all", action="store_true", help="also fired and cancelled ones")
    tm.add_argument("--json", action="store_true")
    tm.add_argument("--data-dir", metavar="DIR")
    tm.set_defaults(func=cmd_timers, timers_command="list")
    tsub = tm.add_subparsers(dest="timers_command", metavar="ACTION")
    tc = tsub.add_parser("cancel", help="cancel a timer or alarm by id")
    tc.add_argument("id", type=int)
    tc.add_argument("--data-dir", metavar="DIR", default=argparse.SUPPRESS)  # SUPPRESS: keeps the parent's
    tsub.add_parser("stop", help="silence what is ringing").add_argument("--data-dir", metavar="DIR",
                                                                          default=argparse.SUPPRESS)

    from assistant_services.cli_align import add_commands

    add_commands(sub, _config)

    cfg = sub.add_parser("config", help="configuration")
    csub = cfg.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    cs = csub.add_parser("show", help="print the effective configuration")
    cs.add_argument("--data-dir", metavar="DIR")
    cs.set_defaults(func=cmd_config_show)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except AssistantError as exc:
        print(f"error: {shown(exc, lines=True)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
