#!/usr/bin/env bash
# Checks a provisioned builder image (EC2 Image Builder's validate and test phases): pinned
# tools present and working, the machine-agent and its unit installed and valid, kernel settings.
# Usage: validate.sh ARTIFACTS_DIR
set -euo pipefail

artifacts="$(cd "${1:?usage: validate.sh ARTIFACTS_DIR}" && pwd)"
# shellcheck source=SCRIPTDIR/../versions.env
. "$artifacts/versions.env"

problems=0
check() { # description command...
  local what="$1"
  shift
  if "$@" >/dev/null 2>&1; then
    printf '[validate] ok: %s\n' "$what" >&2
  else
    printf '[validate] FAILED: %s\n' "$what" >&2
    problems=$((problems + 1))
  fi
}

tools=/opt/slipway/tools/bin
check "buildkitd is $BUILDKIT_VERSION" sh -c "$tools/buildkitd --version | grep -qF ' $BUILDKIT_VERSION'"
check "buildctl is $BUILDKIT_VERSION" sh -c "$tools/buildctl --version | grep -qF ' $BUILDKIT_VERSION'"
check "runc is $RUNC_VERSION with seccomp" sh -c "/usr/local/sbin/runc --version | grep -qx 'runc version ${RUNC_VERSION#v}' && /usr/local/sbin/runc --version | grep -q '^libseccomp: '"
check "node is v$NODEJS_MAJOR" sh -c "/usr/bin/node --version | grep -q '^v$NODEJS_MAJOR\\.'"
check "the machine-agent bundle parses" /usr/bin/node --check /opt/slipway/machine-agent.cjs
check "/etc/slipway is root-only" sh -c "[ \"\$(stat -c %a /etc/slipway)\" = 700 ]"
check "the unit is valid" systemd-analyze verify /etc/systemd/system/slipway-machine-agent.service
check "the unit is enabled" systemctl is-enabled slipway-machine-agent.service
check "the machine-agent waits for its configuration" sh -c "! systemctl is-active slipway-machine-agent.service"
check "overlay is available" grep -qw overlay /proc/filesystems
check "inotify watches raised" sh -c "[ \"\$(sysctl -n fs.inotify.max_user_watches)\" -ge 1048576 ]"
check "no build toolchain left" sh -c "! command -v go"

if [ "$problems" -gt 0 ]; then
  printf '[validate] %d check(s) failed\n' "$problems" >&2
  exit 1
fi
