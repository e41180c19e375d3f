package ipctopic

import (
	"fmt"

	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/shm"
)

// TopicState is what an inspector (cmd/ipcs) reads of a topic, without a
// handle and without changing it: see [Inspect]. It is a plain value.
type TopicState struct {
	Policy   string // "block" or "overwrite"
	Slots    int    // messages the topic holds
	MaxMsg   int    // the largest message it accepts
	Shutdown bool   // Shutdown was called
	Stats    Stats  // the shared counters (Published is the tail)

	// Publisher is the publisher lock: its holder is inside a Publish, a
	// Subscribe or a Shutdown.
	Publisher shm.LockState
	// Subscribers are the owned subscriber slots, in slot order.
	Subscribers []SubscriberState

	SubscribersAsleep bool // a subscriber announced that it sleeps waiting for a message
	PublishersAsleep  bool // a publisher announced that it sleeps waiting for room
}

// SubscriberState is one owned subscriber slot as [Inspect] reads it.
type SubscriberState struct {
	Slot  int        // the slot's index in the subscriber table
	Owner shm.Holder // the process whose Subscriber uses it, with its liveness
	// Cursor is the cursor it stored: the next message it reads (under
	// the block policy, less up to a batch: see layout.go).
	Cursor uint64
	// Lag is how many published messages it has not read (Published -
	// Cursor; 0 if the cursor is ahead, which only a join racing the
	// inspection shows).
	Lag uint64
}

// Inspect reads the topic in payload, a topic segment's payload that may be
// a read-only mapping, with atomic loads only: it takes no lock, repairs
// nothing (a dead publisher's message is not counted in Dropped, nor a
// dead subscriber's slot in Reclaimed, until a user of the topic notices
// it), and claims no liveness token. A payload that holds no topic is an
// error wrapping [ErrCorrupt]. It is the inspector registered for
// shm.KindTopic.
func Inspect(payload []byte) (TopicState, error) {
	c, err := readConfig(payload)
	if err != nil {
		return TopicState{}, fmt.Errorf("ipctopic: inspect: %w", err)
	}
	b := payload[:c.size():c.size()]
	tail := u64At(b, offTail).Load()
	st := TopicState{
		Policy: c.policy.String(), Slots: int(c.slots), MaxMsg: int(c.maxMsg),
		Shutdown: u32At(b, offShutdown).Load() != 0,
		Stats: Stats{
			Published: tail, Dropped: u64At(b, offDropped).Load(),
			Reclaimed: u64At(b, offReclaimed).Load(), Waits: u64At(b, offWaits).Load(),
		},
		SubscribersAsleep: u32At(b, offDataFx).Load()&1 != 0,
		PublishersAsleep:  u32At(b, offSpaceFx).Load()&1 != 0,
	}
	for i := range c.subs {
		off := ctlSize + uint64(i)*subStride
		o := u64At(b, off+subOwner).Load()
		if o == 0 {
			continue
		}
		s := SubscriberState{Slot: int(i), Owner: shm.HolderOf(o), Cursor: u64At(b, off+subCursor).Load()}
		if s.Cursor < tail {
			s.Lag = tail - s.Cursor
		}
		st.Subscribers = append(st.Subscribers, s)
	}
	st.Stats.Subscribers = len(st.Subscribers)
	if st.Publisher, err = shm.PeekLockAt(b[offPLock : offPLock+robust.Size]); err != nil {
		return st, fmt.Errorf("ipctopic: inspect the publisher lock: %w", err)
	}
	return st, nil
}

// Holders returns the holder of the publisher lock and the owners of the
// subscriber slots.
func (s TopicState) Holders() []shm.Holder {
	var hs []shm.Holder
	if s.Publisher.Holder != nil {
		hs = append(hs, *s.Publisher.Holder)
	}
	for _, sub := range s.Subscribers {
		hs = append(hs, sub.Owner)
	}
	return hs
}

// Counters returns the topic's counters that only grow, by name.
func (s TopicState) Counters() map[string]uint64 {
	return map[string]uint64{
		"Published": s.Stats.Published, "Dropped": s.Stats.Dropped,
		"Reclaimed": s.Stats.Reclaimed, "Waits": s.Stats.Waits,
	}
}

func init() {
	shm.RegisterInspector(shm.KindTopic, func(p []byte) (shm.Report, error) { return Inspect(p) })
}
