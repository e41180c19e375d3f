package ipcqueue

import (
	"fmt"

	"github.com/ipckit/ipckit/shm"
)

// QueueState is what an inspector (cmd/ipcs) reads of a queue, without a
// handle and without changing it: see [Inspect]. It is a plain value.
type QueueState struct {
	Capacity int    // bytes of messages the queue holds (see "Capacity")
	MaxMsg   int    // the largest message it accepts
	Messages uint64 // messages queued: committed and not yet taken
	Bytes    uint64 // ring bytes they take, headers and padding included
	Shutdown bool   // Shutdown was called
	Stats    Stats  // the shared counters

	Producer shm.LockState // the producer lock: its holder is inside a Put
	Consumer shm.LockState // the consumer lock: its holder is inside a Get, or waits for data holding it

	ConsumersAsleep bool // a consumer announced that it sleeps on the empty queue
	ProducersAsleep bool // a producer announced that it sleeps on the full queue
}

// Inspect reads the queue in payload, a queue segment's payload that may be
// a read-only mapping, with atomic loads only: it takes no lock, repairs
// nothing (a dead producer's message is not yet counted in Dropped until a
// user of the queue notices it), and claims no liveness token. A payload
// that holds no queue is an error wrapping [ErrCorrupt]. It is the
// inspector registered for shm.KindQueue.
func Inspect(payload []byte) (QueueState, error) {
	c, err := readConfig(payload)
	if err != nil {
		return QueueState{}, fmt.Errorf("ipcqueue: inspect: %w", err)
	}
	ctl := payload[:ctlSize:ctlSize]
	st := QueueState{Capacity: int(c.ring - hdrSize), MaxMsg: int(c.maxMsg)}
	// Gets before puts, as Len loads them: a Get counted after the load of
	// gets cannot make puts - gets negative.
	gets := u64At(ctl, offGets).Load()
	puts := u64At(ctl, offPuts).Load()
	head := u64At(ctl, offHead).Load()
	tail := u64At(ctl, offTail).Load()
	if puts > gets {
		st.Messages = puts - gets
	}
	if tail-head <= c.ring {
		st.Bytes = tail - head
	}
	st.Shutdown = u32At(ctl, offShutdown).Load() != 0
	st.Stats = Stats{
		Puts: puts, Gets: gets, Dropped: u64At(ctl, offDropped).Load(),
		ConsumerDeaths: u64At(ctl, offCDead).Load(), Waits: u64At(ctl, offWaits).Load(),
	}
	if st.Producer, err = shm.PeekLock(u64At(ctl, offPLock), u32At(ctl, offPLockFx)); err != nil {
		return st, fmt.Errorf("ipcqueue: inspect the producer lock: %w", err)
	}
	if st.Consumer, err = shm.PeekLock(u64At(ctl, offCLock), u32At(ctl, offCLockFx)); err != nil {
		return st, fmt.Errorf("ipcqueue: inspect the consumer lock: %w", err)
	}
	st.ConsumersAsleep = u32At(ctl, offDataFx).Load()&1 != 0
	st.ProducersAsleep = u32At(ctl, offSpaceFx).Load()&1 != 0
	return st, nil
}

// Holders returns the holders of the queue's two locks.
func (s QueueState) Holders() []shm.Holder {
	var hs []shm.Holder
	for _, l := range []shm.LockState{s.Producer, s.Consumer} {
		if l.Holder != nil {
			hs = append(hs, *l.Holder)
		}
	}
	return hs
}

// Counters returns the queue's Stats by name.
func (s QueueState) Counters() map[string]uint64 {
	return map[string]uint64{
		"Puts": s.Stats.Puts, "Gets": s.Stats.Gets, "Dropped": s.Stats.Dropped,
		"ConsumerDeaths": s.Stats.ConsumerDeaths, "Waits": s.Stats.Waits,
	}
}

func init() {
	shm.RegisterInspector(shm.KindQueue, func(p []byte) (shm.Report, error) { return Inspect(p) })
}
