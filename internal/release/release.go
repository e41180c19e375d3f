// Package release has release stores: stores that later loads and stores
// of other CPUs see after everything this goroutine wrote before them, and
// that, unlike sync/atomic's Store (an XCHG on amd64, a full fence), do not
// wait for the store buffer to drain.
//
// Use one where a store publishes data written before it and nothing after
// it must wait for it to become visible: the lock word of an unlock whose
// caller fences afterwards anyway, a record's commit word, a position read
// by another process. Where a later load must be ordered after it (a
// Dekker-style wake-up check) the caller still needs a full fence.
package release

import "sync/atomic"

// Store64 stores v in *p with release semantics; see the package doc.
// Under the race detector it is atomic.Store, which the detector
// understands.
func Store64(p *atomic.Uint64, v uint64) { store64(p, v) }
