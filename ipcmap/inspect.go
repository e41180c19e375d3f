package ipcmap

import (
	"fmt"

	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/shm"
)

// MapState is what an inspector (cmd/ipcs) reads of a map, without a
// handle and without changing it: see [Inspect]. It is a plain value.
type MapState struct {
	Stats   Stats         // entries, capacity, bytes in use and deaths, as [Map.Stats] gives them
	Slots   int           // slots in the table (twice the most entries, or more)
	Deleted int           // deleted slots (tombstones) the table holds now
	Writer  shm.LockState // the writers' lock: its holder is inside a write
}

// Inspect reads the map in payload, a map segment's payload that may be a
// read-only mapping, with atomic loads only (the loads [Map.Stats] makes):
// it takes no lock, repairs nothing (a dead writer's death is counted in
// Stats.Deaths only once a writer repairs after it) and claims no
// liveness token. A payload that holds no map is an error wrapping
// [ErrCorrupt]. It is the inspector registered for shm.KindMap.
func Inspect(payload []byte) (MapState, error) {
	g, err := readGeometry(payload)
	if err != nil {
		return MapState{}, fmt.Errorf("ipcmap: inspect: %w", err)
	}
	w := view(payload, g)
	st := MapState{
		Stats:   w.stats(),
		Slots:   int(g.slots()),
		Deleted: int(min(w.tombs.Load(), g.slots())),
	}
	if st.Writer, err = shm.PeekLockAt(payload[offLock : offLock+robust.Size]); err != nil {
		return st, fmt.Errorf("ipcmap: inspect the writers' lock: %w", err)
	}
	return st, nil
}

// Holders returns the holder of the writers' lock, if any.
func (s MapState) Holders() []shm.Holder {
	if s.Writer.Holder == nil {
		return nil
	}
	return []shm.Holder{*s.Writer.Holder}
}

// Counters returns the map's counter that only grows: Deaths.
func (s MapState) Counters() map[string]uint64 {
	return map[string]uint64{"Deaths": s.Stats.Deaths}
}

func init() {
	shm.RegisterInspector(shm.KindMap, func(p []byte) (shm.Report, error) { return Inspect(p) })
}
