#!/usr/bin/env bash
# Installs the assistant as a systemd service, as root, on Debian/Ubuntu/JetPack:
#
#   sudo deploy/install.sh [--no-start] [--python PYTHON]
#
#   - apt packages the assistant needs (the same list as scripts/run.sh: deploy/lib.sh APT_RUN)
#   - system user and group 'assistant' (home /var/lib/assistant, no login shell), member of
#     audio (the microphone) and, on a Jetson, video (the GPU nodes)
#   - /opt/assistant/venv with the project installed (not editable) from this checkout; x86_64:
#     the pinned CPU torch wheel; aarch64: a --system-site-packages venv that uses the JetPack torch
#   - /etc/assistant/config.toml from deploy/config.example.toml, only if it does not exist yet
#   - /var/lib/assistant (0750, the data dir), /etc/systemd/system/assistant.service, then
#     systemctl daemon-reload and enable --now assistant (restart when it was running already)
#
# --no-start: enable the service but do not start or restart it now.
# --python: the interpreter the venv is made from (default /usr/bin/python3: on a Jetson the one
#   NVIDIA's torch wheel is installed into). Not one under /home or /root (pyenv, conda): the
#   service user cannot run it, and the unit's ProtectHome=yes hides it.
# Without a running systemd (a container, a chroot) the systemctl steps are skipped with a message.
# Idempotent: run it again after `git pull` to update the code; it never overwrites the config.
# deploy/uninstall.sh undoes it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$ROOT/deploy/lib.sh"

SERVICE=assistant
SERVICE_USER=assistant
PREFIX=/opt/assistant
VENV="$PREFIX/venv"
CONF_DIR=/etc/assistant
CONF="$CONF_DIR/config.toml"
DATA_DIR=/var/lib/assistant
UNIT_SRC="$ROOT/systemd/assistant.service"
UNIT_DST="/etc/systemd/system/$SERVICE.service"
PYTHON=/usr/bin/python3

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

START=1
while [ "$#" -gt 0 ]; do
  case "$1" in
    --no-start) START=0 ;;
    --python) [ "$#" -ge 2 ] || die "--python needs an interpreter"; PYTHON="$2"; shift ;;
    --python=*) PYTHON="${1#--python=}" ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'error: unknown argument: %s\nusage: %s [--no-start] [--python PYTHON] (--help)\n' "$1" "$0" >&2; exit 2 ;;
  esac
  shift
done

[ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 $*"
[ -f "$UNIT_SRC" ] || die "$UNIT_SRC not found: run this script from a checkout of the assistant"

DONE=()   # what this run changed, printed at the end
NOTES=()  # what the user still has to do
did() { say "$*"; DONE+=("$*"); }

is_jetson() {
  [ -f /etc/nv_tegra_release ] || grep -qas 'nvidia,tegra' /proc/device-tree/compatible
}

systemd_running() { [ -d /run/systemd/system ]; }

# Files made here must be readable by the service user (root's umask may be 077).
umask 022

# ---- apt packages ------------------------------------------------------------------------------
apt_install "${APT_RUN[@]}"

# ---- the service user --------------------------------------------------------------------------
groups_wanted=(audio)
if is_jetson; then
  groups_wanted+=(video)  # /dev/nvhost-*, /dev/nvmap, /dev/nvgpu/*: root:video 0660 on L4T
fi
if getent passwd "$SERVICE_USER" >/dev/null; then
  say "user $SERVICE_USER exists"
  home="$(getent passwd "$SERVICE_USER" | cut -d: -f6)"
  [ "$home" = "$DATA_DIR" ] || say "warning: $SERVICE_USER's home is $home, not $DATA_DIR (the service does not use it)"
else
  nologin="$(command -v nologin || echo /usr/sbin/nologin)"
  useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home --shell "$nologin" \
    --comment "assistant voice daemon" "$SERVICE_USER"
  did "created system user and group $SERVICE_USER (home $DATA_DIR, shell $nologin)"
fi
for group in "${groups_wanted[@]}"; do
  if ! getent group "$group" >/dev/null; then
    say "warning: group $group does not exist; the unit's SupplementaryGroups= needs it"
    NOTES+=("create group $group (groupadd --system $group), then restart the service")
  elif id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx "$group"; then
    say "user $SERVICE_USER is in group $group"
  else
    usermod -a -G "$group" "$SERVICE_USER"
    did "added user $SERVICE_USER to group $group"
  fi
done

# ---- directories -------------------------------------------------------------------------------
if [ ! -d "$DATA_DIR" ]; then
  install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 "$DATA_DIR"
  did "created data dir $DATA_DIR ($SERVICE_USER, 0750: group $SERVICE_USER may read the API token)"
fi
install -d -m 0755 "$PREFIX" "$CONF_DIR"

# ---- the venv and the project ------------------------------------------------------------------
check_python "$PYTHON"
PYTHON="$(command -v "$PYTHON")"
real_python="$(readlink -f "$PYTHON")"
case "$real_python" in
  /home/* | /root/* | /run/user/*)
    die "$PYTHON is $real_python, under a home directory: the service user cannot run it (and ProtectHome=yes hides it). Use a system interpreter: --python /usr/bin/python3" ;;
esac
if [ -e "$VENV/pyvenv.cfg" ] && ! grep -q "^home = $(dirname "$PYTHON")\$" "$VENV/pyvenv.cfg"; then
  say "$VENV was made from another interpreter ($(sed -n 's/^home = //p' "$VENV/pyvenv.cfg")): making it again from $PYTHON"
  rm -rf "$VENV"
fi
ensure_venv "$VENV" "$PYTHON"
# pip builds in the source tree (build/, *.egg-info): build from a copy, so the checkout gets no
# root-owned files, and so a developer's .venv or .git never reaches the build.
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
tar -C "$ROOT" --exclude=./.venv --exclude=./.git --exclude=./build --exclude='*.egg-info' \
  --exclude='__pycache__' --exclude=./.pytest_cache -cf - . | tar -C "$src" -xf -
# Uninstalled first, so that the code is replaced even when the version number did not change (that
# is how a re-run updates it); the dependencies stay and pip only adds what is missing.
"$VENV/bin/python" -m pip uninstall -q -y assistant >/dev/null 2>&1 || true
pip_install_project "$VENV" "$src"
[ -x "$VENV/bin/assistant" ] || die "$VENV/bin/assistant missing after pip install"
did "installed the assistant $("$VENV/bin/assistant" --version | cut -d' ' -f2) into $VENV (from $ROOT)"

# ---- the config --------------------------------------------------------------------------------
if [ -e "$CONF" ]; then
  say "kept the existing $CONF (never overwritten; the example is $ROOT/deploy/config.example.toml)"
else
  install -m 0640 -o root -g "$SERVICE_USER" "$ROOT/deploy/config.example.toml" "$CONF"
  did "installed $CONF (root:$SERVICE_USER 0640) from deploy/config.example.toml"
fi

# Runs the installed CLI as the service user, with the service's config and data dir.
as_service() {
  (cd / && runuser -u "$SERVICE_USER" -- env HOME="$DATA_DIR" ASSISTANT_DATA_DIR="$DATA_DIR" \
    "$VENV/bin/assistant" --config "$CONF" "$@")
}
config_ok=1
if ! shown="$(as_service config show --data-dir "$DATA_DIR" 2>&1)"; then
  config_ok=0
  say "warning: 'assistant --config $CONF config show' fails as user $SERVICE_USER, and so would the service: $shown"
  NOTES+=("fix what the warning above says ($CONF must be readable by $SERVICE_USER and valid), then: systemctl restart $SERVICE")
fi

# ---- a model bundle? ---------------------------------------------------------------------------
have_bundle=1
if [ "$config_ok" -eq 1 ]; then
  bundle="$(printf '%s' "$shown" | "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["effective"]["bundle"])')"
  if [ ! -f "$bundle/manifest.json" ]; then
    have_bundle=0
    say "warning: no model bundle at $bundle: the service would fail to start"
    NOTES+=("give the service a model bundle, e.g. the tiny random one (its output is noise):
      runuser -u $SERVICE_USER -- $VENV/bin/assistant models tiny $bundle
    or set [engine] bundle in $CONF to a bundle under $DATA_DIR; then: systemctl start $SERVICE")
  fi
fi

# ---- the unit ----------------------------------------------------------------------------------
if cmp -s "$UNIT_SRC" "$UNIT_DST"; then
  say "$UNIT_DST is up to date"
else
  install -m 0644 "$UNIT_SRC" "$UNIT_DST"
  did "installed $UNIT_DST"
fi

NOTES+=("to use the assistant CLI as yourself with the service: sudo usermod -aG $SERVICE_USER \$USER (then log in
  again); it finds the service's $DATA_DIR by itself")

if ! systemd_running; then
  say "systemd is not running here (a container or chroot?): skipped systemctl daemon-reload/enable/start"
  NOTES+=("on the target machine: systemctl daemon-reload && systemctl enable --now $SERVICE")
else
  systemctl daemon-reload
  did "systemctl daemon-reload"
  if systemctl is-enabled --quiet "$SERVICE"; then
    say "$SERVICE is enabled"
  else
    systemctl enable --quiet "$SERVICE"
    did "enabled $SERVICE (starts at boot)"
  fi
  if [ "$START" -eq 0 ]; then
    say "--no-start: not starting $SERVICE"
    NOTES+=("start it: systemctl start $SERVICE")
  elif [ "$config_ok" -eq 0 ] || [ "$have_bundle" -eq 0 ]; then
    say "not starting $SERVICE until the warnings above are fixed"
  else
    if systemctl is-active --quiet "$SERVICE"; then
      action=restart  # pick up the new code and unit
    else
      action=start
    fi
    say "systemctl $action $SERVICE (waits until the models are loaded: up to 5 minutes)"
    if systemctl "$action" "$SERVICE"; then
      did "${action}ed $SERVICE"
    else
      systemctl --no-pager status "$SERVICE" >&2 || true
      die "$SERVICE failed to $action: journalctl -u $SERVICE -e"
    fi
  fi
fi

# ---- summary -----------------------------------------------------------------------------------
echo
echo "install.sh: done."
printf '  - %s\n' "${DONE[@]}"
echo "  config: $CONF   data: $DATA_DIR   logs: journalctl -u $SERVICE"
if [ "${#NOTES[@]}" -gt 0 ]; then
  echo "still to do:"
  printf '  - %s\n' "${NOTES[@]}"
fi
