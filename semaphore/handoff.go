package semaphore

import (
	"os"

	"github.com/ipckit/ipckit/internal/handoff"
)

// The handle types of this package, for internal/handoff: spawn passes the
// file of an object's segment (shm's handle) to a child that gets the
// object in its argument. A FileMutex travels as its path and passes no
// file.
func init() {
	handoff.Register(
		handoff.For(func(m *Mutex) []*os.File { return handoff.Files(m.Segment()) }),
		handoff.For(func(e *Event) []*os.File { return handoff.Files(e.Segment()) }),
		handoff.For(func(s *Semaphore) []*os.File { return handoff.Files(s.Segment()) }),
		handoff.For(func(b *Barrier) []*os.File { return handoff.Files(b.Segment()) }),
		handoff.For(func(c *Condition) []*os.File { return handoff.Files(c.Segment()) }),
	)
}
