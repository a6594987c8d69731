//go:build tools

// Package tools pins the BuildKit commands the builder image compiles; go.sum holds the
// checksum of every module they are built from.
package tools

import (
	_ "github.com/moby/buildkit/cmd/buildctl"
	_ "github.com/moby/buildkit/cmd/buildkitd"
)
