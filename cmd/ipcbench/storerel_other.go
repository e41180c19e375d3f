//go:build !amd64

package main

import "sync/atomic"

// storeRelease stores v at p with release semantics: off amd64 an atomic
// store, so that a consumer that sees v also sees what was written before.
func storeRelease(p *uint64, v uint64) { atomic.StoreUint64(p, v) }
