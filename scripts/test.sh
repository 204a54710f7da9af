#!/usr/bin/env bash
# The test command (see README.md): sets everything up on first use (deploy/bootstrap.sh test), then
# runs the whole test suite from the repository root. Extra arguments go to pytest, e.g.
#   scripts/test.sh -x tests/test_audio.py
# Exit status: pytest's; "no tests collected" (pytest's 5) is reported as a failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/deploy/bootstrap.sh" test
cd "$ROOT"

rc=0
"$ROOT/.venv/bin/python" -m pytest -q "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests: that is a failure here (check the paths and -k/-m filters)" >&2
fi
exit "$rc"
