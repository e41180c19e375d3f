package ipcqueue

import (
	"fmt"

	"github.com/ipckit/ipckit/shm"
)

// TasksState is what an inspector (cmd/ipcs) reads of a joinable queue's
// task counts (its ".tasks" segment), without a handle and without
// changing them: see [InspectTasks]. It is a plain value.
type TasksState struct {
	Unfinished int64  // messages put and not yet marked done nor written off
	Lost       uint64 // messages written off with dead consumers, in total
	LostProcs  uint32 // consumers written off, in total
	LastLost   int    // the pid of the last consumer written off (0 if none)
	// JoinersAsleep: a Join announced that it sleeps.
	JoinersAsleep bool
	// Consumers are the claimed consumer slots.
	Consumers []ConsumerState
}

// ConsumerState is one consumer handle's slot: the process holding it and
// the messages it took and has not marked done. A dead Holder with Taken
// above 0 is what the next Join writes off as lost.
type ConsumerState struct {
	Slot   int
	Holder shm.Holder // with its pid and liveness
	Taken  int64
	// Reaping: a process is writing the slot off (its holder died).
	Reaping bool
}

// InspectTasks reads the task counts in payload, a tasks segment's payload
// that may be a read-only mapping, with atomic loads only: it writes
// nothing off, takes nothing and claims no liveness token. A payload that
// holds no task counts is an error wrapping [ErrCorrupt]. It is the
// inspector registered for shm.KindTasks.
func InspectTasks(payload []byte) (TasksState, error) {
	if err := checkTasks(payload); err != nil {
		return TasksState{}, fmt.Errorf("ipcqueue: inspect: %w", err)
	}
	st := TasksState{
		Unfinished: int64(u64At(payload, tOffUnfin).Load()),
		Lost:       u64At(payload, tOffLost).Load(),
		LostProcs:  u32At(payload, tOffLProcs).Load(),
		LastLost:   int(u32At(payload, tOffLPid).Load()),
	}
	st.JoinersAsleep = u32At(payload, tOffDoneFx).Load()&1 != 0
	for i := range JoinableSlots {
		tok, pid, taken := slotWordsIn(payload, i)
		t := tok.Load()
		if t == 0 {
			continue
		}
		cs := ConsumerState{Slot: i, Taken: int64(taken.Load()), Reaping: t&reapMark != 0}
		if !cs.Reaping {
			cs.Holder = shm.HolderOf(t)
		}
		cs.Holder.Pid = int(pid.Load())
		st.Consumers = append(st.Consumers, cs)
	}
	return st, nil
}

// Holders returns the consumers holding messages not marked done.
func (s TasksState) Holders() []shm.Holder {
	var hs []shm.Holder
	for _, c := range s.Consumers {
		if c.Taken > 0 && !c.Reaping {
			hs = append(hs, c.Holder)
		}
	}
	return hs
}

// Counters returns the counts that only grow: "Lost" and "LostProcs".
func (s TasksState) Counters() map[string]uint64 {
	return map[string]uint64{"Lost": s.Lost, "LostProcs": uint64(s.LostProcs)}
}

func init() {
	shm.RegisterInspector(shm.KindTasks, func(p []byte) (shm.Report, error) { return InspectTasks(p) })
}
