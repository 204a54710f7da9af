#!/usr/bin/env bash
# Shared set-up for scripts/run.sh and scripts/test.sh (it is called by them, not meant to be run
# by hand, though that works too):
#
#   deploy/bootstrap.sh run    apt packages the assistant needs, .venv, pip install the project
#   deploy/bootstrap.sh test   the same plus the apt packages the test suite needs
#
# Works on a fresh Debian 12 (only python3 + bash) and on a Jetson (JetPack 6, Ubuntu 22.04).
# Idempotent: apt packages already installed are skipped, and pip runs again only when
# pyproject.toml, this script, deploy/lib.sh or deploy/weights.txt change (a stamp file in .venv holds their hash).
# The apt package lists, the torch pins and the venv/pip logic live in deploy/lib.sh, which
# deploy/install.sh (the system service) shares.
#
# Environment: PYTHON (default python3) picks the interpreter the venv is made from.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/deploy/bootstrap.sh"
LIB="$ROOT/deploy/lib.sh"
VENV="$ROOT/.venv"
STAMP="$VENV/.bootstrap-stamp"
PYTHON="${PYTHON:-python3}"

# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$LIB"

case "${1:-}" in
  run) APT_PACKAGES=("${APT_RUN[@]}") ;;
  test) APT_PACKAGES=("${APT_TEST[@]}") ;;
  *) die "usage: deploy/bootstrap.sh run|test" ;;
esac

# ---- apt ---------------------------------------------------------------------------------------
apt_install "${APT_PACKAGES[@]}"

# ---- python and the venv -----------------------------------------------------------------------
check_python "$PYTHON"
ensure_venv "$VENV" "$PYTHON"

# ---- pip ---------------------------------------------------------------------------------------
key="$(cat "$ROOT/pyproject.toml" "$SELF" "$LIB" "$WEIGHTS_FILE" <(echo "$ARCH") | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ]; then
  exit 0
fi
rm -f "$STAMP"
cd "$ROOT"
pip_install_project "$VENV" -e '.[test]'
echo "$key" >"$STAMP"
