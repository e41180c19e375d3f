package ipcpipe

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"unsafe"

	"github.com/ipckit/ipckit/shm"
)

// PipeState is what an inspector (cmd/ipcs) reads of a pipe, without a
// handle and without changing it: see [Inspect]. It is a plain value.
type PipeState struct {
	Duplex bool
	Ring   int // bytes of each direction's ring
	MaxMsg int // the largest message
	// Ends are the two ends: end e sends on direction e.
	Ends [2]EndState
	// Dirs are the directions that exist: two for a duplex pipe, one
	// (direction 1, end 1 to end 0) for a one-way pipe.
	Dirs []DirState
}

// EndState is one end of a pipe as an inspector reads it.
type EndState struct {
	Owner     shm.Holder // the process holding the end, with its pid and liveness
	InTransit bool       // a handle to the end travels to another process
	Closed    bool       // the end was closed by its process
}

// DirState is one direction of a pipe as an inspector reads it. Sender and
// receiver publish their positions lazily (see the layout comment), so
// Bytes and Messages may count messages already received, or not yet count
// messages being sent: they describe the published positions.
type DirState struct {
	Dir int // the end that sends on it
	// Sent and Taken are the published byte positions (they only grow).
	Sent, Taken uint64
	Bytes       uint64 // ring bytes between them, headers and padding included
	// Messages is the number of records between them, or -1 if the
	// receiver moved while they were counted.
	Messages       int
	ReceiverAsleep bool // the receiver announced that it sleeps on the empty direction
	SenderAsleep   bool // the sender announced that it sleeps on the full direction
}

// Inspect reads the pipe in payload, a pipe segment's payload that may be
// a read-only mapping, with atomic loads only: it takes nothing, changes
// nothing and claims no liveness token. A payload that holds no pipe, or
// positions that cannot be, is an error wrapping [ErrCorrupt]. It is the
// inspector registered for shm.KindPipe.
func Inspect(payload []byte) (PipeState, error) {
	c, err := readConfig(payload)
	if err != nil {
		return PipeState{}, fmt.Errorf("ipcpipe: inspect: %w", err)
	}
	st := PipeState{Duplex: c.duplex, Ring: int(c.ring), MaxMsg: int(c.maxMsg)}
	for e := range 2 {
		o := offEnd + e*128
		tok := u64At(payload, o+endOwner).Load()
		h := shm.HolderOf(tok &^ transitBit)
		h.Pid = int(u32At(payload, o+endPid).Load())
		st.Ends[e] = EndState{Owner: h, InTransit: tok&transitBit != 0, Closed: u32At(payload, o+endClosed).Load() != 0}
	}
	for d := range 2 {
		if !c.has(d) {
			continue
		}
		o, r := offDir+d*512, c.ringOff(d)
		ring := payload[r : r+int(c.ring) : r+int(c.ring)]
		head := u64At(payload, o+dirHead)
		ds := DirState{Dir: d, Taken: head.Load()}
		ds.Sent = u64At(payload, o+dirTail).Load() // after head: tail - head cannot be negative
		if ds.Sent-ds.Taken > c.ring || (ds.Sent|ds.Taken)&7 != 0 {
			return st, fmt.Errorf("ipcpipe: inspect: direction %d: tail %d, head %d, ring of %d bytes: %w", d, ds.Sent, ds.Taken, c.ring, ErrCorrupt)
		}
		ds.Bytes = ds.Sent - ds.Taken
		ds.Messages = countRecords(ring, c, ds.Taken, ds.Sent)
		if head.Load() != ds.Taken {
			ds.Messages = -1 // the receiver moved on: the writer may have reused what was counted
		}
		ds.ReceiverAsleep = u32At(payload, o+dirData).Load()&1 != 0
		ds.SenderAsleep = u32At(payload, o+dirSpace).Load()&1 != 0
		st.Dirs = append(st.Dirs, ds)
	}
	return st, nil
}

// countRecords counts the records from h to t in ring with atomic loads of
// their headers, or returns -1 at one that cannot be there.
func countRecords(ring []byte, c config, h, t uint64) int {
	n := 0
	for h != t {
		off := h & (c.ring - 1)
		w := atomic.LoadUint64((*uint64)(unsafe.Pointer(&ring[off : off+8][0])))
		if w == padMark {
			h += c.ring - off
		} else {
			L := recLen(w)
			if w > uint64(c.maxMsg) || off+L > c.ring {
				return -1
			}
			h += L
			n++
		}
		if t-h > c.ring {
			return -1
		}
	}
	return n
}

// Holders returns the processes holding the two ends.
func (s PipeState) Holders() []shm.Holder {
	return []shm.Holder{s.Ends[0].Owner, s.Ends[1].Owner}
}

// Counters returns each direction's published positions: "Sent1" and
// "Taken1" for direction 1.
func (s PipeState) Counters() map[string]uint64 {
	m := map[string]uint64{}
	for _, d := range s.Dirs {
		m["Sent"+strconv.Itoa(d.Dir)] = d.Sent
		m["Taken"+strconv.Itoa(d.Dir)] = d.Taken
	}
	return m
}

func init() {
	shm.RegisterInspector(shm.KindPipe, func(p []byte) (shm.Report, error) { return Inspect(p) })
}
