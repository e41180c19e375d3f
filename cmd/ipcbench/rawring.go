package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

// The raw ring is a reference line for queue_64B_msgs_per_s: about the
// least a ring between two processes can cost on this machine. One
// producer, one consumer, fixed slots the size of an ipcqueue record of
// 64 bytes (an 8-byte sequence word, then the message, copied in and out
// like every other line), and nothing else: no lock, no counter, no fence
// on the producer's side, no crash handling, no futex. The consumer waits
// for the next slot's sequence word, pausing first as ipcqueue's pacer
// does (without the pause it polls the line being written and runs about
// a fifth slower); it publishes how far it has read every eighth of the
// ring. Whatever separates ipcqueue from this line is the price of its
// guarantees; whatever separates this line from a channel between two
// goroutines is the machine's.

const (
	rawSlots = 1024 // as the channel's capacity
	rawSlot  = 8 + msgSize
	rawHead  = 64 // the consumer's position has the first cache line
)

// rawArg asks a child to write N messages into the raw ring in Seg.
type rawArg struct {
	Seg *shm.Segment
	N   int
}

// rawRing is a view of the ring's segment.
type rawRing struct {
	head  *atomic.Uint64 // slots the consumer has read (lazily published)
	slots []byte
}

func newRawRing(seg *shm.Segment) rawRing {
	b := seg.Bytes()
	return rawRing{head: (*atomic.Uint64)(unsafe.Pointer(&b[0])), slots: b[rawHead : rawHead+rawSlots*rawSlot]}
}

// seq is the sequence word of the slot of message i: i+1 once written.
func (r rawRing) seq(i int) *uint64 {
	return (*uint64)(unsafe.Pointer(&r.slots[(i%rawSlots)*rawSlot]))
}

func (r rawRing) msg(i int) []byte {
	o := (i%rawSlots)*rawSlot + 8
	return r.slots[o : o+msgSize]
}

var rawProduce = spawn.Register("ipcbench.rawproduce", func(ctx context.Context, a rawArg) error {
	defer a.Seg.Close()
	r := newRawRing(a.Seg)
	read := 0
	msg := make([]byte, msgSize)
	for i := range a.N {
		for i-read >= rawSlots {
			read = int(r.head.Load())
		}
		binary.LittleEndian.PutUint64(msg, uint64(i))
		copy(r.msg(i), msg)                 // the whole message, as every other line does
		storeRelease(r.seq(i), uint64(i+1)) // publishes the message
	}
	return nil
})

// rawRate is messages per second through the raw ring, from a producer
// child to this process.
func rawRate(cfg *config) (float64, error) {
	seg, err := shm.CreateAnonymous(rawHead+rawSlots*rawSlot, nil)
	if err != nil {
		return 0, err
	}
	defer seg.Close()
	r := newRawRing(seg)
	n := streamCount(cfg, msgSize)
	i := 0
	mps, err := receive(n, msgSize, func(ctx context.Context) (*spawn.Process, error) {
		return spawn.Start(ctx, rawProduce, rawArg{Seg: seg, N: n})
	}, func(p *spawn.Process, buf []byte) error {
		s := (*atomic.Uint64)(unsafe.Pointer(r.seq(i)))
		if s.Load() != uint64(i+1) {
			procyield(16) // let the producer finish the line (ipcqueue's pacer)
		}
		for spins := 1; s.Load() != uint64(i+1); spins++ {
			if spins&(1<<16-1) == 0 {
				select {
				case <-p.Done():
					return errors.New("raw ring: the producer exited early")
				default:
				}
			}
		}
		copy(buf, r.msg(i))
		i++
		if i%(rawSlots/8) == 0 {
			r.head.Store(uint64(i))
		}
		return nil
	})
	if last := binary.LittleEndian.Uint64(r.msg(n - 1)); err == nil && last != uint64(n-1) {
		err = fmt.Errorf("raw ring: the last message says %d, want %d", last, n-1)
	}
	return mps, err
}

// procyield executes the CPU's spin-wait hint cycles times (the runtime's
// spin primitive, as ipcqueue uses it).
//
//go:linkname procyield runtime.procyield
func procyield(cycles uint32)
