#!/usr/bin/env bash
# Removes what deploy/install.sh installed, as root:
#
#   sudo deploy/uninstall.sh [--purge [--yes]]
#
#   - stops and disables the service, removes /etc/systemd/system/assistant.service, the code in
#     /opt/assistant and the regenerable caches in /var/cache/assistant
#   - KEEPS the data (/var/lib/assistant: recordings, store, bundles, trained bridges), the config
#     (/etc/assistant), local unit drop-ins (/etc/systemd/system/assistant.service.d) and the
#     'assistant' user, so that a later install.sh picks up where this one left off
#
# --purge: remove those too (asks for confirmation on the terminal; --yes: do not ask).
# Without a running systemd (a container, a chroot) the systemctl steps are skipped with a message.
# Idempotent: what is already gone is reported as such.
set -euo pipefail

SERVICE=assistant
SERVICE_USER=assistant
PREFIX=/opt/assistant
CONF_DIR=/etc/assistant
DATA_DIR=/var/lib/assistant
CACHE_DIR=/var/cache/assistant
UNIT="/etc/systemd/system/$SERVICE.service"
DROPINS="/etc/systemd/system/$SERVICE.service.d"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

PURGE=0
YES=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --purge) PURGE=1 ;;
    --yes | -y) YES=1 ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'error: unknown argument: %s\nusage: %s [--purge [--yes]] (--help)\n' "$1" "$0" >&2; exit 2 ;;
  esac
  shift
done

[ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 $*"

if [ "$PURGE" -eq 1 ] && [ "$YES" -eq 0 ]; then
  if ! (: <>/dev/tty) 2>/dev/null; then  # no controlling terminal (a script, CI)
    die "--purge deletes $DATA_DIR (recordings, store, bundles) and $CONF_DIR with no terminal to confirm on: add --yes"
  fi
  printf 'Delete %s (recordings, store, model bundles, trained bridges), %s, %s and the user %s for good? [y/N] ' \
    "$DATA_DIR" "$CONF_DIR" "$DROPINS" "$SERVICE_USER" >/dev/tty
  read -r answer </dev/tty || answer=""
  case "$answer" in
    y | Y | yes | YES) ;;
    *) die "not confirmed: nothing removed" ;;
  esac
fi

DONE=()
KEPT=()
did() { say "$*"; DONE+=("$*"); }

remove() {  # remove PATH DESCRIPTION
  if [ -e "$1" ] || [ -L "$1" ]; then
    rm -rf -- "$1"
    did "removed $2 $1"
  else
    say "$2 $1 is not there"
  fi
}

# ---- the service -------------------------------------------------------------------------------
if [ -d /run/systemd/system ]; then
  if systemctl cat "$SERVICE" >/dev/null 2>&1; then
    if systemctl is-active --quiet "$SERVICE"; then
      systemctl stop "$SERVICE"
      did "stopped $SERVICE"
    fi
    if systemctl is-enabled --quiet "$SERVICE" 2>/dev/null; then
      systemctl disable --quiet "$SERVICE"
      did "disabled $SERVICE"
    fi
  else
    say "$SERVICE is not a known unit"
  fi
else
  say "systemd is not running here (a container or chroot?): skipped systemctl stop/disable"
  # What `systemctl disable` would remove, so that no dangling link is left behind.
  rm -f "/etc/systemd/system/multi-user.target.wants/$SERVICE.service"
fi

remove "$UNIT" "unit"
if [ "$PURGE" -eq 1 ]; then
  remove "$DROPINS" "unit drop-ins"
elif [ -d "$DROPINS" ]; then
  KEPT+=("$DROPINS (local unit drop-ins)")
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl reset-failed "$SERVICE" >/dev/null 2>&1 || true
fi

# ---- code and caches ---------------------------------------------------------------------------
remove "$PREFIX" "code and venv"
remove "$CACHE_DIR" "caches"

# ---- data, config, user ------------------------------------------------------------------------
if [ "$PURGE" -eq 1 ]; then
  remove "$DATA_DIR" "data dir"
  remove "$CONF_DIR" "config dir"
  if getent passwd "$SERVICE_USER" >/dev/null; then
    userdel "$SERVICE_USER"
    did "removed user $SERVICE_USER"
  fi
  if getent group "$SERVICE_USER" >/dev/null; then
    groupdel "$SERVICE_USER"
    did "removed group $SERVICE_USER"
  fi
else
  [ -e "$DATA_DIR" ] && KEPT+=("$DATA_DIR (data: recordings, store, bundles, trained bridges)")
  [ -e "$CONF_DIR" ] && KEPT+=("$CONF_DIR (config)")
  getent passwd "$SERVICE_USER" >/dev/null && KEPT+=("user and group $SERVICE_USER (owns $DATA_DIR)")
fi

# ---- summary -----------------------------------------------------------------------------------
echo
echo "uninstall.sh: done."
if [ "${#DONE[@]}" -gt 0 ]; then
  printf '  - %s\n' "${DONE[@]}"
else
  echo "  nothing to remove (already uninstalled)"
fi
if [ "${#KEPT[@]}" -gt 0 ]; then
  echo "kept (remove them too with --purge):"
  printf '  - %s\n' "${KEPT[@]}"
fi
