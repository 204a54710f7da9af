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
from pathlib import Path

from assistant import __version__
from assistant.errors import AssistantError

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
                                speculative=cfg.engine.speculative)
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
            print(f"error: {name}: {exc}", file=sys.stderr)
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
            print(f"{name}\n  you said:  {turn.transcript}\n  assistant: {turn.response}\n"
                  f"  timings:   encoder {t.encoder_s:.3f} s, bridge {t.bridge_s:.3f} s, transcript "
                  f"{t.transcript_s:.3f} s, response {t.response_s:.3f} s (bridge {turn.bridge_version})", flush=True)
        else:
            print(f"{name}: {turn.transcript}" if len(args.files) > 1 else turn.transcript, flush=True)
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
    from assistant.presets import pull

    path = pull(args.preset, _config(args).data_path, timeout_s=args.timeout, force=args.force)
    print(f"pulled {args.preset} into {path}; it has no trained bridge yet: run personalized alignment")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    cfg = _config(args)
    print(json.dumps({**asdict(cfg), "effective": {"data_dir": str(cfg.data_path),
                                                   "bundle": str(cfg.bundle_path())}}, indent=2))
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
        sp.add_argument("--bundle", metavar="DIR", help="model bundle (default: the configured one, else the demo)")
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
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
