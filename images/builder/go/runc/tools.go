//go:build tools

// Package tools pins the runc command the builder image compiles; go.sum holds the checksum
// of every module it is built from.
package tools

import (
	_ "github.com/opencontainers/runc"
)
