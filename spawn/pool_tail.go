package spawn

import (
	"io"
	"sync"
)

// stderrTail is how much of a worker's stderr is kept for
// [WorkerError.Stderr].
const stderrTail = 4 << 10

// teeTail copies a worker's stderr to the user's writer and to its tail
// buffer. The tail always gets everything; after the user's writer fails
// once it is no longer written to, and its error is not reported (it would
// stop the copying, and the tail with it). A nil user writer is the null
// device.
type teeTail struct {
	user   io.Writer
	tail   *tailBuffer
	failed bool // written by the one copying goroutine only
}

func (t *teeTail) Write(b []byte) (int, error) {
	t.tail.Write(b)
	if !t.failed && t.user != nil {
		if n, err := t.user.Write(b); err != nil || n != len(b) {
			t.failed = true
		}
	}
	return len(b), nil
}

// tailBuffer keeps the last stderrTail bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(b)
	if len(b) >= stderrTail {
		b = b[len(b)-stderrTail:]
	}
	if over := len(t.buf) + len(b) - stderrTail; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, b...)
	return n, nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
