package main

import "unsafe"

// storeRelease stores v at p with release semantics and no fence: on
// amd64 (TSO) a plain aligned store, which the compiler does not move
// before the calls and stores that precede it here (the copy of the
// message). This is the fence-free publication the raw ring measures.
func storeRelease(p *uint64, v uint64) {
	*(*uint64)(unsafe.Pointer(p)) = v
}
