package ipctopic

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"os"

	"github.com/ipckit/ipckit/internal/handoff"
	"github.com/ipckit/ipckit/shm"
)

// The handle type of this package, for internal/handoff: spawn passes the
// file of a topic's segment to a child that gets the topic in its argument.
func init() {
	handoff.Register(handoff.For(func(t *Topic) []*os.File { return handoff.Files(t.Segment()) }))
}

// wireTopic is a topic's handle: its segment's handle (a name, or an
// inherited descriptor inside spawn). Everything else is read back from the
// control block, which decoding validates.
type wireTopic struct {
	Seg *shm.Segment
}

// GobEncode encodes a handle to the topic (never its messages or its
// subscribers): a named topic travels as its name, an anonymous one ([New])
// as a descriptor that spawn passes to the child. A heap topic cannot
// travel ([shm.ErrHeap]); a closed handle returns an error wrapping
// [os.ErrClosed].
func (t *Topic) GobEncode() ([]byte, error) {
	if !t.open.Load() {
		return nil, errClosed
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(wireTopic{Seg: t.seg}); err != nil {
		return nil, fmt.Errorf("ipctopic: encode handle: %w", err)
	}
	return buf.Bytes(), nil
}

// GobDecode attaches t, which must be new (zero), to the topic a handle
// names, after validating its layout ([ErrCorrupt] if it is invalid,
// [shm.ErrKind] if the segment holds something else). Release it with
// [Topic.Close].
func (t *Topic) GobDecode(b []byte) error {
	var w wireTopic
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&w); err != nil {
		return fmt.Errorf("ipctopic: decode handle: %w", err)
	}
	if w.Seg == nil {
		return fmt.Errorf("ipctopic: decode handle: no segment: %w", ErrCorrupt)
	}
	if k := w.Seg.Kind(); k != shm.KindTopic {
		w.Seg.Close()
		return fmt.Errorf("ipctopic: decode handle: segment holds %v, not a topic: %w", k, shm.ErrKind)
	}
	if err := t.attachTo(w.Seg); err != nil {
		w.Seg.Close()
		return fmt.Errorf("ipctopic: decode handle: %w", err)
	}
	return nil
}
