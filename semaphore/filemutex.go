package semaphore

import (
	"bytes"
	"context"
	"encoding/gob"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// File mutex
//
// The kernel holds the lock: flock(2) on a descriptor the FileMutex keeps
// open, so a holder that dies releases it, and a live holder is proven alive
// by the lock itself. The file's first 64 bytes are a holder record, mapped
// shared, which the holder writes with plain atomic stores (no system call):
// dirty is 1 from the moment an exclusive holder has the lock until just
// before it unlocks. A new exclusive holder that finds dirty set knows its
// predecessor died holding the lock, and gets ErrOwnerDead; the consistency
// state then works as for Mutex (see the package doc). A shared holder
// (RLock) that finds dirty set gets ErrOwnerDead too, but cannot repair:
// the next exclusive holder is told again.
//
// flock belongs to the open file, not to a goroutine, so goroutines of one
// process pass through an in-process read-write gate first; readers share
// one flock(LOCK_SH), taken by the first and dropped by the last.
//
// Record (fileRecSize bytes at the start of the lock file; atomic):
//
//	off size field  written by             read by
//	  0    4 magic  first opener (CAS)     openers
//	  4    4 dirty  exclusive holder       every new holder
//	  8    4 state  exclusive holder       every new holder
//	 12    4 pid    exclusive holder       diagnostics
//	 16    8 start  exclusive holder       diagnostics
const (
	fileMagic   = 0x58544d46 // "FMTX"
	fileRecSize = 64
)

// FileMutex is a lock on a file, shared by every process that opens the
// same path, with exclusive (Lock) and shared (RLock) modes. It works
// between goroutines of one process too. When its exclusive holder dies, the
// next holder is told with [ErrOwnerDead]; see the package doc.
//
// The lock file holds a 64-byte record and must not be used for anything
// else. A *FileMutex is safe for concurrent use and may be passed to a child
// process (its handle is the path). It must not be copied.
type FileMutex struct {
	_    noCopy
	path string
	file *os.File
	rec  []byte // the mapped record

	magic, dirty, state, pid *atomic.Uint32
	start                    *atomic.Uint64

	gate    gate
	rmu     sync.Mutex // guards readers and the shared flock
	readers int

	mu     sync.Mutex
	closed bool
}

// NewFileMutex opens the lock file at path, creating it (mode 0600) if it
// does not exist. It refuses a symbolic link and a file that is not a lock
// file, with [ErrLockFile].
func NewFileMutex(path string) (*FileMutex, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	f, rec, err := openLockFile(abs)
	if err != nil {
		return nil, fmt.Errorf("semaphore: lock file %s: %w", path, err)
	}
	m := &FileMutex{path: abs, file: f, rec: rec}
	m.magic, m.dirty, m.state, m.pid = u32(rec, 0), u32(rec, 4), u32(rec, 8), u32(rec, 12)
	m.start = u64(rec, 16)
	if !m.magic.CompareAndSwap(0, fileMagic) {
		if got := m.magic.Load(); got != fileMagic {
			m.Close()
			return nil, fmt.Errorf("%w: %s has magic %#x", ErrLockFile, path, got)
		}
	}
	return m, nil
}

// Path returns the lock file's absolute path.
func (m *FileMutex) Path() string { return m.path }

// Lock locks m exclusively, waiting as long as it takes. It returns nil, or
// [ErrOwnerDead] with the lock held, or [ErrNotRecoverable] (not held).
func (m *FileMutex) Lock() error { return m.LockContext(context.Background()) }

// LockContext is [FileMutex.Lock] that gives up when ctx is done, returning
// ctx.Err() without the lock. The wait for another process polls.
func (m *FileMutex) LockContext(ctx context.Context) error {
	if err := m.gate.acquire(ctx, true); err != nil {
		return err
	}
	if err := m.flock(ctx, lockEx); err != nil {
		m.gate.release(true)
		return err
	}
	return m.acquiredEx()
}

// TryLock locks m exclusively if nobody holds it, and reports whether it
// did; a dead previous holder is reported with [ErrOwnerDead], lock held.
func (m *FileMutex) TryLock() (bool, error) {
	if !m.gate.try(true) {
		return false, nil
	}
	ok, err := m.tryFlock(lockEx)
	if !ok || err != nil {
		m.gate.release(true)
		return false, err
	}
	err = m.acquiredEx()
	return err != ErrNotRecoverable, err
}

func (m *FileMutex) acquiredEx() error {
	st := m.state.Load()
	if st == stateNotRecoverable {
		m.unflock()
		m.gate.release(true)
		return ErrNotRecoverable
	}
	died := m.dirty.Load() != 0
	m.pid.Store(self.pid)
	m.start.Store(uint64(self.start))
	m.dirty.Store(1)
	if died {
		m.state.Store(stateInconsistent)
		return ErrOwnerDead
	}
	if st == stateInconsistent {
		return ErrOwnerDead
	}
	return nil
}

// Unlock releases an exclusive lock. Unlocking a FileMutex this process does
// not hold exclusively returns [ErrNotLocked]. Unlocking an inconsistent
// one (after [ErrOwnerDead], without MarkConsistent) makes it
// unrecoverable.
func (m *FileMutex) Unlock() error {
	if !m.gate.holdsWrite() {
		return ErrNotLocked
	}
	if m.state.Load() == stateInconsistent {
		m.state.Store(stateNotRecoverable)
	}
	m.dirty.Store(0)
	err := m.unflock()
	m.gate.release(true)
	return err
}

// MarkConsistent tells m that the data it guards was repaired after
// [ErrOwnerDead]; the caller must hold m exclusively.
func (m *FileMutex) MarkConsistent() error {
	if !m.gate.holdsWrite() {
		return ErrNotLocked
	}
	if m.state.Load() == stateInconsistent {
		m.state.Store(stateConsistent)
	}
	return nil
}

// RLock takes m shared, with other readers in any process, waiting as long
// as it takes. If the last exclusive holder died holding it, RLock returns
// [ErrOwnerDead] with the shared lock held; only an exclusive holder can
// repair and MarkConsistent.
func (m *FileMutex) RLock() error { return m.RLockContext(context.Background()) }

// RLockContext is [FileMutex.RLock] that gives up when ctx is done.
func (m *FileMutex) RLockContext(ctx context.Context) error {
	if err := m.gate.acquire(ctx, false); err != nil {
		return err
	}
	m.rmu.Lock()
	if m.readers == 0 {
		if err := m.flock(ctx, lockSh); err != nil {
			m.rmu.Unlock()
			m.gate.release(false)
			return err
		}
	}
	m.readers++
	m.rmu.Unlock()
	switch {
	case m.state.Load() == stateNotRecoverable:
		m.RUnlock()
		return ErrNotRecoverable
	case m.dirty.Load() != 0 || m.state.Load() == stateInconsistent:
		return ErrOwnerDead
	}
	return nil
}

// RUnlock releases a shared lock; without one it returns [ErrNotLocked].
func (m *FileMutex) RUnlock() error {
	m.rmu.Lock()
	defer m.rmu.Unlock()
	if m.readers == 0 {
		return ErrNotLocked
	}
	m.readers--
	var err error
	if m.readers == 0 {
		err = m.unflock()
	}
	m.gate.release(false)
	return err
}

// flock takes the file lock, polling while ctx can be cancelled.
func (m *FileMutex) flock(ctx context.Context, how int) error {
	if ctx.Done() == nil {
		return flockWait(m.file, how)
	}
	delay := 100 * time.Microsecond
	for {
		ok, err := m.tryFlock(how)
		if ok || err != nil {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, 10*time.Millisecond)
	}
}

func (m *FileMutex) tryFlock(how int) (bool, error) { return flockTry(m.file, how) }

func (m *FileMutex) unflock() error { return flockUnlock(m.file) }

// Close closes the lock file. A lock this handle holds is released by the
// kernel, as if the process had died: the next exclusive holder gets
// [ErrOwnerDead]. It is safe to call twice.
func (m *FileMutex) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	err := unmapRecord(m.rec)
	if cerr := m.file.Close(); err == nil {
		err = cerr
	}
	return err
}

// GobEncode encodes a handle to m: its path.
func (m *FileMutex) GobEncode() ([]byte, error) {
	var buf bytes.Buffer
	err := gob.NewEncoder(&buf).Encode(m.path)
	return buf.Bytes(), err
}

// GobDecode opens, in m, which must be new, the lock file a handle names.
func (m *FileMutex) GobDecode(b []byte) error {
	var path string
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&path); err != nil {
		return fmt.Errorf("semaphore: decode handle: %w", err)
	}
	o, err := NewFileMutex(path)
	if err != nil {
		return err
	}
	m.path, m.file, m.rec = o.path, o.file, o.rec
	m.magic, m.dirty, m.state, m.pid, m.start = o.magic, o.dirty, o.state, o.pid, o.start
	return nil
}

// gate is the in-process read-write lock in front of flock; unlike
// sync.RWMutex, acquiring it can be cancelled.
type gate struct {
	mu      sync.Mutex
	writer  bool
	readers int
	ch      chan struct{} // closed on release; made only when someone waits
}

func (g *gate) try(write bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.takeLocked(write)
}

func (g *gate) takeLocked(write bool) bool {
	switch {
	case g.writer, write && g.readers > 0:
		return false
	case write:
		g.writer = true
	default:
		g.readers++
	}
	return true
}

func (g *gate) acquire(ctx context.Context, write bool) error {
	g.mu.Lock()
	for !g.takeLocked(write) {
		if g.ch == nil {
			g.ch = make(chan struct{})
		}
		ch := g.ch
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		g.mu.Lock()
	}
	g.mu.Unlock()
	return nil
}

func (g *gate) release(write bool) {
	g.mu.Lock()
	if write {
		g.writer = false
	} else {
		g.readers--
	}
	if g.ch != nil {
		close(g.ch)
		g.ch = nil
	}
	g.mu.Unlock()
}

func (g *gate) holdsWrite() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.writer
}
