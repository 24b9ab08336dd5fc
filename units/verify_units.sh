#!/bin/sh
# verify_units.sh SYSTEMD-ANALYZE RGPU-BINARY [--system UNIT...] [--user UNIT...]
# Runs `systemd-analyze verify` on the units (NAME.in templates get the binary's folder as
# @bindir@) and fails on any complaint, warnings such as unknown keys included. With
# MAX_EXPOSURE=N (0-100) set, each system service's `systemd-analyze security` exposure must
# also be N or lower (1.7 shows as 17).
set -eu
analyze=$1
rgpu=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/system" "$work/user" "$work/runtime"
scope=system
for arg in "$@"; do
  case $arg in
    --system) scope=system ;;
    --user) scope=user ;;
    *)
      name=$(basename "$arg" .in)
      sed -e "s|@bindir@|$(dirname "$rgpu")|g" -e 's|@sysconfdir@|/etc|g' -e 's|@libdir@|/usr/lib|g' \
        "$arg" > "$work/$scope/$name"
      ;;
  esac
done
status=0
for scope in system user; do
  set -- "$work/$scope"/*
  [ -e "$1" ] || continue
  # A user manager's specifiers (%t) need a runtime folder.
  if ! out=$(XDG_RUNTIME_DIR="$work/runtime" SYSTEMD_LOG_COLOR=0 "$analyze" --$scope verify "$@" 2>&1); then
    status=1
  fi
  if [ -n "$out" ]; then
    printf '%s\n' "$out"
    status=1
  fi
  echo "$scope units: $(cd "$work/$scope" && echo *)"
done
if [ -n "${MAX_EXPOSURE:-}" ]; then
  for unit in "$work/system"/*.service; do
    [ -e "$unit" ] || continue
    if ! "$analyze" security --offline=true --threshold="$MAX_EXPOSURE" "$unit" > "$work/security" 2>&1; then
      cat "$work/security"
      echo "$(basename "$unit"): exposure over $MAX_EXPOSURE"
      status=1
    else
      tail -n 1 "$work/security"
    fi
  done
fi
exit $status
