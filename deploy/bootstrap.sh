#!/usr/bin/env bash
# Shared set-up for scripts/run.sh and scripts/test.sh (it is called by them, not meant to be run
# by hand, though that works too):
#
#   deploy/bootstrap.sh run    apt packages the assistant needs, .venv, pip install the project
#   deploy/bootstrap.sh test   the same plus the apt packages the test suite needs
#
# Works on a fresh Debian 12 (only python3 + bash) and on a Jetson (JetPack 6, Ubuntu 22.04).
# Idempotent: apt packages already installed are skipped, and pip runs again only when
# pyproject.toml or this script change (a stamp file in .venv holds their hash).
#
# Environment: PYTHON (default python3) picks the interpreter the venv is made from.
set -euo pipefail

# ---- the apt packages, in one place ------------------------------------------------------------
# run:  libportaudio2 (sounddevice: the microphone), espeak-ng (speaks run.sh's sample sentence)
# test: sox, plus a virtual microphone (pulseaudio, pulseaudio-utils, libasound2-plugins) and other
#       speech synthesizers (flite, festival + a voice)
APT_RUN=(libportaudio2 espeak-ng)
APT_TEST=("${APT_RUN[@]}" sox pulseaudio pulseaudio-utils libasound2-plugins flite festival festvox-kallpc16k)

TORCH_X86="torch==2.13.0"  # a CPU wheel; plain 'torch' would pull GBs of CUDA packages
JETSON_TORCH_URL="https://docs.nvidia.com/deeplearning/frameworks/install-pytorch-jetson-platform/index.html"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/deploy/bootstrap.sh"
VENV="$ROOT/.venv"
STAMP="$VENV/.bootstrap-stamp"
PYTHON="${PYTHON:-python3}"
ARCH="$(uname -m)"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

case "${1:-}" in
  run) APT_PACKAGES=("${APT_RUN[@]}") ;;
  test) APT_PACKAGES=("${APT_TEST[@]}") ;;
  *) die "usage: deploy/bootstrap.sh run|test" ;;
esac

# ---- apt ---------------------------------------------------------------------------------------
APT_UPDATED=0

installed() { dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'; }

# Run a command quietly; show its output only if it fails.
quiet() {
  local log rc=0
  log="$(mktemp)"
  "$@" >"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    cat "$log" >&2
    rm -f "$log"
    die "'$*' failed (exit $rc)"
  fi
  rm -f "$log"
}

apt_install() {
  local missing=() pkg
  if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    say "not a Debian-based system: install these packages yourself if missing: $*"
    return 0
  fi
  for pkg in "$@"; do
    installed "$pkg" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0

  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 ||
      die "need root to install ${missing[*]}: run 'apt-get install ${missing[*]}' as root, then re-run"
    sudo=(sudo)
    [ -t 0 ] || sudo=(sudo -n)  # no terminal (CI): fail rather than wait for a password
  fi
  say "installing apt packages: ${missing[*]}"
  if [ "$APT_UPDATED" -eq 0 ]; then
    quiet "${sudo[@]}" apt-get update
    APT_UPDATED=1
  fi
  quiet "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
}

apt_install "${APT_PACKAGES[@]}"

# ---- python and the venv -----------------------------------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: install Python 3.10 or newer"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
  die "$PYTHON is $("$PYTHON" -V 2>&1); the assistant needs Python 3.10 or newer"

jetson_torch_check() {
  # On aarch64 torch must come from NVIDIA's JetPack wheel, installed into the system Python.
  if ! "$1" -c 'import torch' >/dev/null 2>&1; then
    die "torch is not importable by $1 on this $ARCH machine.
  Install NVIDIA's PyTorch for Jetson wheel matching your JetPack into the system Python:
    $JETSON_TORCH_URL
  then re-run this command. (The venv is made with --system-site-packages and uses that torch.)"
  fi
  if [ "${2:-}" = gpu ] && ! "$1" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    say "warning: torch sees no CUDA GPU (a CPU-only wheel?): the assistant will run on the CPU"
  fi
}

venv_opts=()
if [ "$ARCH" = aarch64 ]; then
  venv_opts=(--system-site-packages)
fi

venv_usable() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1 || return 1
  if [ "$ARCH" = aarch64 ]; then  # must see the system's JetPack torch
    grep -qi '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg" || return 1
  fi
}

if ! venv_usable; then
  if [ "$ARCH" = aarch64 ]; then
    jetson_torch_check "$PYTHON"
  fi
  if [ -e "$VENV" ]; then
    say "replacing $VENV (unusable, or on aarch64 made without --system-site-packages)"
    rm -rf "$VENV"
  fi
  say "creating virtual environment $VENV"
  venv_log="$(mktemp)"
  if ! "$PYTHON" -m venv "${venv_opts[@]}" "$VENV" >"$venv_log" 2>&1; then
    # Debian's python3 has no ensurepip until python3-venv is installed.
    rm -rf "$VENV"
    say "'$PYTHON -m venv' failed; installing python3-venv"
    apt_install python3-venv
    "$PYTHON" -m venv "${venv_opts[@]}" "$VENV" ||
      { cat "$venv_log" >&2; rm -f "$venv_log"; die "could not create $VENV with $PYTHON"; }
  fi
  rm -f "$venv_log"
fi

# ---- pip ---------------------------------------------------------------------------------------
key="$(cat "$ROOT/pyproject.toml" "$SELF" <(echo "$ARCH") | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ]; then
  exit 0
fi
rm -f "$STAMP"
pip=("$VENV/bin/python" -m pip install -q)
cd "$ROOT"
if [ "$ARCH" = aarch64 ]; then
  jetson_torch_check "$VENV/bin/python" gpu
  # Pin the JetPack torch so pip can never replace it with a CPU-only wheel from the index.
  constraints="$(mktemp)"
  "$VENV/bin/python" -c 'import importlib.metadata as m; print("torch==" + m.version("torch"))' >"$constraints"
  say "installing the project: pip install -e '.[test]' (keeping the JetPack $(cat "$constraints"))"
  "${pip[@]}" -c "$constraints" -e '.[test]' >&2 || { rm -f "$constraints"; die "pip install failed"; }
  rm -f "$constraints"
else
  say "installing $TORCH_X86 (CPU wheel)"
  "${pip[@]}" "$TORCH_X86" >&2 || die "pip install $TORCH_X86 failed"
  say "installing the project: pip install -e '.[test]'"
  "${pip[@]}" -e '.[test]' >&2 || die "pip install failed"
fi
echo "$key" >"$STAMP"
