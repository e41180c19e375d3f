package ipcqueue

import (
	"bytes"
	"encoding/gob"
	"fmt"

	"github.com/ipckit/ipckit/shm"
)

// wireQueue is a queue's handle: its segment's handle (a name, or an
// inherited descriptor inside spawn). Ring size and maximum message size
// are read back from the control block, which decoding re-validates.
type wireQueue struct {
	Seg *shm.Segment
}

// GobEncode encodes a handle to the queue (never its contents): a named
// queue travels as its name, an anonymous one ([New]) as a descriptor that
// spawn passes to the child. A heap queue cannot travel ([shm.ErrHeap]); a
// closed handle returns an error wrapping [os.ErrClosed].
func (q *Queue) GobEncode() ([]byte, error) {
	if !q.open.Load() {
		return nil, errClosed
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(wireQueue{Seg: q.seg}); err != nil {
		return nil, fmt.Errorf("ipcqueue: encode handle: %w", err)
	}
	return buf.Bytes(), nil
}

// GobDecode attaches q, which must be new (zero), to the queue a handle
// names, after validating the queue's layout ([ErrCorrupt] if it is
// invalid). The new handle spins with [DefaultSpin]; see [Queue.SetSpin].
// Release it with [Queue.Close].
func (q *Queue) GobDecode(b []byte) error {
	var w wireQueue
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&w); err != nil {
		return fmt.Errorf("ipcqueue: decode handle: %w", err)
	}
	if w.Seg == nil {
		return fmt.Errorf("ipcqueue: decode handle: no segment: %w", ErrCorrupt)
	}
	if k := w.Seg.Kind(); k != shm.KindQueue {
		w.Seg.Close()
		return fmt.Errorf("ipcqueue: decode handle: segment holds %v, not a queue: %w", k, shm.ErrKind)
	}
	if err := q.attachTo(w.Seg); err != nil {
		w.Seg.Close()
		return fmt.Errorf("ipcqueue: decode handle: %w", err)
	}
	return nil
}
