#!/usr/bin/env bash
# Builds buildkitd, buildctl and runc from the Go modules pinned in go/*/go.sum, for this
# machine's architecture, and proves they are the pinned ones: BuildKit builds reproducibly, so
# its binaries must match the sha256 in versions.env; runc links libseccomp through cgo, so its
# sources are pinned (module hash) and the binary must report the pinned version.
# Usage: build-tools.sh ARTIFACTS_DIR OUT_DIR
set -euo pipefail

artifacts="$(cd "${1:?usage: build-tools.sh ARTIFACTS_DIR OUT_DIR}" && pwd)"
out="${2:?usage: build-tools.sh ARTIFACTS_DIR OUT_DIR}"
# shellcheck source=SCRIPTDIR/../versions.env
. "$artifacts/versions.env"

log() { printf '[build-tools] %s\n' "$*" >&2; }
fail() { log "$*"; exit 1; }

case "$(uname -m)" in
  x86_64) arch=AMD64 ;;
  aarch64) arch=ARM64 ;;
  *) fail "unsupported machine $(uname -m)" ;;
esac

# The toolchain and every flag that reaches the binaries are fixed, so the output is too.
export GOTOOLCHAIN="$GO_TOOLCHAIN"
export GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
export GOAMD64=v1 GOARM64=v8.0
export GOPROXY="${GOPROXY:-https://proxy.golang.org}" GOSUMDB="${GOSUMDB:-sum.golang.org}"
export HOME="${HOME:-/root}"

# go.sum is what Go verifies every download against; it must pin what versions.env says.
require_sum() { # module-dir module version sum
  grep -qxF "$2 $3 $4" "$1/go.sum" || fail "$1/go.sum does not pin $2 $3 to $4"
}
require_sum "$artifacts/go/buildkit" github.com/moby/buildkit "$BUILDKIT_VERSION" "$BUILDKIT_MODULE_SUM"
require_sum "$artifacts/go/runc" github.com/opencontainers/runc "$RUNC_VERSION" "$RUNC_MODULE_SUM"

check_sha256() { # file expected
  local actual
  actual="$(sha256sum "$1" | cut -d' ' -f1)"
  [ "$actual" = "$2" ] || fail "$(basename "$1") has sha256 $actual, pinned $2: not the pinned build"
  log "$(basename "$1") sha256 $actual matches the pin"
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

log "building BuildKit $BUILDKIT_VERSION with $GO_TOOLCHAIN"
(
  cd "$artifacts/go/buildkit"
  CGO_ENABLED=0 go build \
    -ldflags "-s -w -X github.com/moby/buildkit/version.Version=$BUILDKIT_VERSION -X github.com/moby/buildkit/version.Package=github.com/moby/buildkit" \
    -o "$work/" github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl
)
buildkitd_pin="BUILDKITD_SHA256_$arch"
buildctl_pin="BUILDCTL_SHA256_$arch"
check_sha256 "$work/buildkitd" "${!buildkitd_pin}"
check_sha256 "$work/buildctl" "${!buildctl_pin}"

log "building runc $RUNC_VERSION with $GO_TOOLCHAIN"
(
  cd "$artifacts/go/runc"
  CGO_ENABLED=1 go build -buildmode=pie -tags "seccomp urfave_cli_no_docs" \
    -ldflags "-X main.gitCommit=$RUNC_VERSION" \
    -o "$work/runc" github.com/opencontainers/runc
)
runc_version="$("$work/runc" --version)"
grep -qx "runc version ${RUNC_VERSION#v}" <<<"$runc_version" || fail "runc reports: $runc_version"
grep -q '^libseccomp: ' <<<"$runc_version" || fail "runc was built without seccomp: $runc_version"

mkdir -p "$out"
install -m 0755 "$work/buildkitd" "$work/buildctl" "$work/runc" "$out/"
log "installed buildkitd, buildctl and runc in $out"
