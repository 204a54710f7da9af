#!/usr/bin/env bash
# The test command (see README.md): sets everything up on first use (deploy/bootstrap.sh test), then
# from the repository root runs
#   1. ruff check over assistant services tests bench (rules: pyproject.toml [tool.ruff]),
#   2. lint-imports, the import contracts (pyproject.toml [tool.importlinter]),
#   3. pytest: the whole test suite (unless extra arguments select less), and prints its wall time.
# All three run even when one fails. Extra arguments go to pytest, e.g.
#   scripts/test.sh -x tests/test_audio.py
# Exit status: pytest's when it fails ("no tests collected", pytest's 5, counts as a failure), else 1 when
# ruff or lint-imports failed, else 0.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/deploy/bootstrap.sh" test
cd "$ROOT"
BIN="$ROOT/.venv/bin"

failed=()
"$BIN/ruff" check assistant services tests bench || failed+=("ruff check")
# --no-cache: the graph takes under a second to build, and no cache folder is left in the tree
"$BIN/lint-imports" --no-cache --no-logo || failed+=("lint-imports")

rc=0
start=$(date +%s)
"$BIN/python" -m pytest -q "$@" || rc=$?
echo "suite wall time: $(( $(date +%s) - start )) s"
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests: that is a failure here (check the paths and -k/-m filters)" >&2
fi
[ "$rc" -eq 0 ] || failed+=("pytest (exit status $rc)")

if [ "${#failed[@]}" -gt 0 ]; then
  for what in "${failed[@]}"; do
    echo "FAILED: $what" >&2
  done
  [ "$rc" -ne 0 ] && exit "$rc"
  exit 1
fi
