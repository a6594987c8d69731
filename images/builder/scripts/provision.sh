#!/usr/bin/env bash
# Turns an Amazon Linux 2023 instance into a Slipway builder image (EC2 Image Builder runs it):
# BuildKit and runc built from pinned sources, Node.js, the machine-agent with its systemd unit
# (enabled; it waits for /etc/slipway/machine.env, which each instance's user data writes), and
# the kernel settings BuildKit needs. Layout: docs/machine-agent.md, "AWS (machine images)".
# Usage: provision.sh ARTIFACTS_DIR
set -euo pipefail

artifacts="$(cd "${1:?usage: provision.sh ARTIFACTS_DIR}" && pwd)"
# shellcheck source=SCRIPTDIR/../versions.env
. "$artifacts/versions.env"

log() { printf '[provision] %s\n' "$*" >&2; }

build_deps=(golang gcc libseccomp-devel)
log "installing packages"
dnf -y -q install "${build_deps[@]}" libseccomp "nodejs${NODEJS_MAJOR}" git-core pigz \
  e2fsprogs util-linux

# Go caches go to disk (/tmp is a small tmpfs on AL2023) and are removed; only the binaries stay.
GOPATH="$(mktemp -d -p /var/tmp)"
GOCACHE="$GOPATH/cache"
export GOPATH GOCACHE
# The unit points the agent at /opt/slipway/tools/bin; runc must be on buildkitd's PATH.
bash "$artifacts/scripts/build-tools.sh" "$artifacts" /opt/slipway/tools/bin
mv /opt/slipway/tools/bin/runc /usr/local/sbin/runc
ln -sfn /opt/slipway/tools/bin/buildctl /usr/local/bin/buildctl
ln -sfn /opt/slipway/tools/bin/buildkitd /usr/local/bin/buildkitd
chmod -R u+w "$GOPATH" && rm -rf "$GOPATH"
dnf -y -q remove "${build_deps[@]}"

log "selecting Node.js $NODEJS_MAJOR as /usr/bin/node"
alternatives --set node "/usr/bin/node-$NODEJS_MAJOR"

log "installing the machine-agent"
install -d -m 0755 /opt/slipway
install -m 0644 "$artifacts/machine/machine-agent.cjs" /opt/slipway/machine-agent.cjs
# Holds machine.env, which carries the registration token: root only.
install -d -m 0700 /etc/slipway
install -m 0644 "$artifacts/machine/slipway-machine-agent.service" /etc/systemd/system/

log "installing kernel settings"
install -m 0644 "$artifacts/kernel/99-slipway-buildkit.conf" /etc/sysctl.d/
install -m 0644 "$artifacts/kernel/slipway-buildkit-modules.conf" /etc/modules-load.d/
modprobe overlay
sysctl --system >/dev/null

systemctl daemon-reload
systemctl enable slipway-machine-agent.service
dnf -y -q clean all
log "done"
