package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/ipckit/ipckit/internal/release"
	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

// The raw rings are reference lines for queue_64B_msgs_per_s: rings with
// none of ipcqueue's guarantees, doing the same work per message as every
// other line. One producer process, one consumer process; 1024 slots, as
// the channel's capacity: each a 64-byte cell aligned to a cache line for
// the message, and a sequence word in an array apart (so no two messages
// share a line, and a message is one line). The producer writes a sequence
// number into its message buffer, on the heap like the queue producer's,
// copies the buffer into the next cell and stores the slot's sequence
// word; the consumer waits for that word, pausing first as ipcqueue's pacer
// does, copies the message out, and publishes how far it has read every
// eighth of the ring. No crash handling, no futex.
//
// The variants differ only in the locked instructions (full fences on
// x86) they make per message, which is where ipcqueue's price is:
//
//	raw_ring_bare      none
//	raw_ring_lock      the producer takes a lock word with a CAS (and
//	                   releases it with a plain store): what any Put that
//	                   is safe for several producers costs
//	raw_ring_lock_add  each side takes a lock so and then adds to a
//	                   counter: a Put's and a Get's locked instructions,
//	                   the add being the full fence after which they look
//	                   for sleepers to wake (ipcqueue/wait.go)
//
// The channel between two goroutines is the machine's in-process figure.
// (An earlier reference ring kept the producer's message in a stack array:
// in one build that ran at 35-40 M messages a second and in the next, one
// line of code away, at 22-23 M, as did every heap placement tried.)
type rawRing struct {
	b []byte
}

const (
	rawSlots = 1024
	rawCell  = 64
	rawLock  = 128 // the producer's lock and counter, then 128 bytes on the consumer's
	rawSeqs  = 512
	rawCells = rawSeqs + rawSlots*8
	rawSize  = rawCells + rawSlots*rawCell
)

// rawFences is a variant's locked instructions a message: the producer's
// lock (1), and then each side's lock and counter (2).
type rawFences int

const (
	rawBare rawFences = iota
	rawLockOnly
	rawLockAdd
)

// rawArg asks a child to write N messages of Size bytes (a variable, so
// that the buffer is on the heap) into the raw ring in Seg.
type rawArg struct {
	Seg    *shm.Segment
	N      int
	Size   int
	Fences rawFences
}

func (r rawRing) word(off int) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&r.b[off])) }

// head is how far the consumer has read (published every eighth of the ring).
func (r rawRing) head() *atomic.Uint64 { return r.word(0) }

// seq is the sequence word of the slot of message i: i+1 once written.
func (r rawRing) seq(i int) *atomic.Uint64 { return r.word(rawSeqs + i%rawSlots*8) }

func (r rawRing) cell(i int) []byte {
	o := rawCells + i%rawSlots*rawCell
	return r.b[o : o+msgSize]
}

// rawSide is one side's lock word and counter.
type rawSide struct{ lock, count *atomic.Uint64 }

// side returns the producer's (0) or the consumer's (1).
func (r rawRing) side(i int) rawSide {
	o := rawLock * (1 + i)
	return rawSide{r.word(o), r.word(o + 8)}
}

func (s rawSide) acquire() {
	for !s.lock.CompareAndSwap(0, 1) {
	}
}

// release stores 0 in the lock word with a plain store, then adds to the
// counter if add (the full fence).
func (s rawSide) release(add bool) {
	release.Store64(s.lock, 0)
	if add {
		s.count.Add(1)
	}
}

var rawProduce = spawn.Register("ipcbench.rawproduce", func(ctx context.Context, a rawArg) error {
	defer a.Seg.Close()
	r := rawRing{a.Seg.Bytes()}
	s := r.side(0)
	read := 0
	msg := make([]byte, a.Size)
	for i := range a.N {
		for i-read >= rawSlots {
			read = int(r.head().Load())
		}
		binary.LittleEndian.PutUint64(msg, uint64(i))
		if a.Fences != rawBare {
			s.acquire()
		}
		copy(r.cell(i), msg)
		release.Store64(r.seq(i), uint64(i+1)) // publishes the message
		if a.Fences != rawBare {
			s.release(a.Fences == rawLockAdd)
		}
	}
	return nil
})

// rawRate is messages per second through a raw ring with the given fences,
// from a producer child to this process.
func rawRate(cfg *config, fences rawFences) (float64, error) {
	seg, err := shm.CreateAnonymous(rawSize)
	if err != nil {
		return 0, err
	}
	defer seg.Close()
	r := rawRing{seg.Bytes()}
	s := r.side(1)
	n := streamCount(cfg, msgSize)
	i := 0
	d, err := receive(n, msgSize, func(ctx context.Context) (*spawn.Process, error) {
		return spawn.Start(ctx, rawProduce, rawArg{Seg: seg, N: n, Size: msgSize, Fences: fences}, nil)
	}, func(p *spawn.Process, buf []byte) error {
		if fences == rawLockAdd {
			s.acquire()
		}
		sq := r.seq(i)
		if sq.Load() != uint64(i+1) {
			procyield(16) // let the producer finish the line (ipcqueue's pacer)
		}
		for spins := 1; sq.Load() != uint64(i+1); spins++ {
			if spins&(1<<16-1) == 0 {
				select {
				case <-p.Done():
					return errors.New("raw ring: the producer exited early")
				default:
				}
			}
		}
		copy(buf, r.cell(i))
		i++
		if i%(rawSlots/8) == 0 {
			r.head().Store(uint64(i))
		}
		if fences == rawLockAdd {
			s.release(true)
		}
		return nil
	})
	if last := binary.LittleEndian.Uint64(r.cell(n - 1)); err == nil && last != uint64(n-1) {
		err = fmt.Errorf("raw ring: the last message says %d, want %d", last, n-1)
	}
	if puts, gets := r.side(0).count.Load(), s.count.Load(); err == nil && fences == rawLockAdd && (puts != uint64(n) || gets != uint64(n)) {
		err = fmt.Errorf("raw ring: %d messages counted put and %d got, want %d", puts, gets, n)
	}
	return rate(n-1, d), err
}

// procyield executes the CPU's spin-wait hint cycles times (the runtime's
// spin primitive, as ipcqueue uses it).
//
//go:linkname procyield runtime.procyield
func procyield(cycles uint32)
