#!/usr/bin/env bash
# The run command (see README.md). Sets everything up on first use (deploy/bootstrap.sh run), then:
#
#   scripts/run.sh               speak a sample sentence with espeak-ng and answer it with the
#                                configured bundle (building the tiny random one if there is none)
#   scripts/run.sh ARGS...       run 'assistant ARGS...', e.g. scripts/run.sh transcribe my.wav
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/deploy/bootstrap.sh" run
ASSISTANT="$ROOT/.venv/bin/assistant"
PY="$ROOT/.venv/bin/python"

if [ "$#" -gt 0 ]; then
  exec "$ASSISTANT" "$@"
fi

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
SENTENCE="set a timer for five minutes"

# The bundle the CLI uses by default: configured, else the shipped demo, else <data_dir>/bundles/tiny.
bundle="$("$ASSISTANT" config show | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["effective"]["bundle"])')"
if [ ! -f "$bundle/manifest.json" ]; then
  if [ -e "$bundle" ] && [ -n "$(ls -A "$bundle" 2>/dev/null)" ]; then
    die "$bundle is not a model bundle (no manifest.json) and is not empty: move it away, or set [engine] bundle"
  fi
  say "no model bundle at $bundle: building the tiny random-weight one (its output is noise)"
  # Built next to the target and renamed when complete, so an interrupted build leaves no half bundle.
  partial="$bundle.partial"
  rm -rf "$partial"
  mkdir -p "$(dirname "$bundle")"
  "$ASSISTANT" models tiny "$partial" >/dev/null
  rmdir "$bundle" 2>/dev/null || true  # an empty directory in the way
  mv "$partial" "$bundle"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
wav="$tmp/set-a-timer.wav"
say "speaking a sample sentence with espeak-ng: \"$SENTENCE\""
espeak-ng -w "$wav" "$SENTENCE"

say "assistant respond $wav"
rc=0
"$ASSISTANT" respond "$wav" || rc=$?  # not exec: the trap removes the temporary WAV afterwards
exit "$rc"
