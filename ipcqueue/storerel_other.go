//go:build !amd64 || race

package ipcqueue

import "sync/atomic"

// storeRel is a release store; see storerel_amd64.go. Elsewhere (and under
// the race detector) it is atomic.Store (STLR on arm64, itself cheap).
func storeRel(p *atomic.Uint64, v uint64) { p.Store(v) }
