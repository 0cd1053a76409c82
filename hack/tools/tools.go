//go:build tools

// Package tools records the tools this module pins.
package tools

import (
	_ "github.com/distribution/distribution/v3/cmd/registry"
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
	_ "sigs.k8s.io/cri-tools/cmd/critest"
)
