//go:build !amd64 || race

package release

import "sync/atomic"

// Elsewhere atomic.Store, which is a release store and more (STLR on
// arm64, itself cheap); under the race detector too, which sees it.
func store64(p *atomic.Uint64, v uint64) { p.Store(v) }
