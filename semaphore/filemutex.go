package semaphore

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/ipckit/ipckit/internal/liveness"
	"github.com/ipckit/ipckit/internal/robust"
)

// File mutex
//
// The kernel holds the lock: flock(2) on a descriptor the FileMutex keeps
// open for its whole life, so a holder that dies releases it, and a live
// holder is proven alive by the lock itself. The file's first 64 bytes are a
// holder record, mapped shared, which the holder writes with plain atomic
// stores (no system call): dirty is 1 from the moment an exclusive holder
// has the lock until just before it unlocks. A new exclusive holder that
// finds dirty set knows its predecessor died holding the lock, and gets
// ErrOwnerDead; the consistency state then works as for Mutex (see the
// package doc). A shared holder (LockShared) that finds dirty set gets
// ErrOwnerDead too, but cannot repair: the next exclusive holder is told
// again.
//
// flock belongs to the open file, not to a goroutine, so goroutines of one
// process pass through an in-process read-write gate first; readers share
// one flock(LOCK_SH), taken by the first and dropped by the last.
//
// Waiting for another process (or another open file of this one) is
// internal/robust's wait on the record's sleepers word: the waiter tries
// flock(LOCK_NB) after announcing itself, and sleeps; whoever drops a
// flock (Unlock, the last UnlockShared) makes a full fence and wakes the
// sleepers. The exclusive holder records its liveness token (owner), which
// waiters follow: the kernel releases a dead holder's flock and tells its
// waiters at once (robust's "Watching holders"); and a waiter tries once
// more before it gives up on a deadline, so a holder that died is reported
// (ErrOwnerDead, from the record) however short the deadline. What no
// Unlock announces (a reader of another process that dies, a flock taken
// by something that is not a FileMutex) is found by the wait's slow
// checks, 100 ms backing off to 2 s. A blocked waiter thus costs nothing
// while the holder lives, and Close wakes it at once.
//
// Close may run while calls wait: calls in flight hold a reference, and the
// descriptor and the mapping are released by the last one out, so no call
// ever touches a closed descriptor (or a descriptor number reused by another
// file) or an unmapped record.
//
// Record: fileRecSize bytes at the start of the lock file, mapped shared by
// every FileMutex on the file. Every field is read and written with atomic
// operations; "the exclusive holder" is whoever holds the flock exclusively
// at the time. TestLayout pins the offsets. fileMagic names the layout: it
// changed when the pid and start time of the holder gave way to its
// liveness token and the sleepers word.
const (
	// recMagic (uint32) holds fileMagic. Written by the first opener (CAS
	// from 0); read by every opener.
	recMagic = 0
	// recDirty (uint32) is 1 from the moment an exclusive holder has the
	// lock until just before it unlocks. Written by the exclusive holder;
	// read by every new holder, exclusive or shared.
	recDirty = 4
	// recState (uint32) is the consistency state (stateConsistent...).
	// Written by the exclusive holder; read by every new holder.
	recState = 8
	// recSleepers (uint32) is the futex word waiters sleep on (robust's
	// "Waiting": bit 0 announces a sleeper). Written by waiters (CAS) and
	// by wakers (CAS, after dropping a flock and a full fence); read by
	// both.
	recSleepers = 12
	// recOwner (uint64) is the liveness token of the exclusive holder, 0
	// when there is none. Written by the exclusive holder (after it has the
	// flock, and cleared just before it unlocks); read by waiters, to
	// follow the holder. Bytes 24 to 63 are reserved, 0.
	recOwner = 16

	fileMagic    = 0x32544d46 // "FMT2"
	fileMagicPid = 0x58544d46 // "FMTX": the pid layout, refused
	fileRecSize  = 64
)

// Consistency states of a lock file's record.
const (
	stateConsistent     = 0
	stateInconsistent   = 1
	stateNotRecoverable = 2
)

// fileRecord is the holder record of a lock file.
type fileRecord struct {
	magic, dirty, state, sleepers *atomic.Uint32
	owner                         *atomic.Uint64
}

// fileRecordAt checks the record at the start of b (a mapped lock file)
// and returns it; a zeroed record becomes a new one. Its errors carry no
// package prefix: the caller names the file.
func fileRecordAt(b []byte) (fileRecord, error) {
	if len(b) < fileRecSize {
		return fileRecord{}, fmt.Errorf("record of %d bytes, want %d: %w", len(b), fileRecSize, os.ErrInvalid)
	}
	if !aligned8(b) {
		return fileRecord{}, fmt.Errorf("record not 8-byte aligned: %w", os.ErrInvalid)
	}
	r := fileRecord{
		magic: u32(b, recMagic), dirty: u32(b, recDirty), state: u32(b, recState),
		sleepers: u32(b, recSleepers), owner: u64(b, recOwner),
	}
	if !r.magic.CompareAndSwap(0, fileMagic) {
		if got := r.magic.Load(); got != fileMagic {
			if got == fileMagicPid {
				return fileRecord{}, fmt.Errorf("record of an older layout (magic %#x, want %#x; remove the file when no process uses it): %w", got, fileMagic, ErrCorrupt)
			}
			return fileRecord{}, fmt.Errorf("record magic %#x, want %#x: %w", got, fileMagic, ErrCorrupt)
		}
	}
	return r, nil
}

// acquired is run by a new exclusive holder. On ErrNotRecoverable the
// caller must drop the lock.
func (r fileRecord) acquired() error {
	st := r.state.Load()
	if st == stateNotRecoverable {
		return ErrNotRecoverable
	}
	died := r.dirty.Load() != 0
	me, _ := liveness.Self() // 0 if this process has none: waiters then only poll slowly
	r.owner.Store(uint64(me))
	r.dirty.Store(1)
	if died || st != stateConsistent {
		// A state no code writes means overwritten memory: repair too.
		r.state.Store(stateInconsistent)
		return ErrOwnerDead
	}
	return nil
}

// shared is run by a new shared holder. On ErrNotRecoverable the caller
// must drop the lock.
func (r fileRecord) shared() error {
	switch st := r.state.Load(); {
	case st == stateNotRecoverable:
		return ErrNotRecoverable
	case st != stateConsistent || r.dirty.Load() != 0:
		return ErrOwnerDead
	}
	return nil
}

// releasing is run by the exclusive holder just before it unlocks.
func (r fileRecord) releasing() {
	if r.state.Load() != stateConsistent {
		r.state.Store(stateNotRecoverable)
	}
	r.dirty.Store(0)
	r.owner.Store(0)
}

func (r fileRecord) markConsistent() {
	if r.state.Load() != stateConsistent {
		r.state.Store(stateConsistent)
	}
}

// FileMutex is a lock on a file, shared by every process that opens the
// same path, with exclusive (Lock) and shared (LockShared) modes. It works
// between goroutines of one process too. When its exclusive holder dies, the
// next holder is told with [ErrOwnerDead]; see the package doc.
//
// FileMutex calls flock(2) itself, on a descriptor it opens once and keeps,
// instead of using github.com/gofrs/flock, which opens the file on every
// Lock and closes it on every Unlock: a system call pair per lock that a
// kept descriptor does not pay (figures: BENCHMARKS.md, section "semaphore:
// figures moved from code comments").
//
// The lock file holds a 64-byte record and must not be used for anything
// else.
//
// A *FileMutex is safe for concurrent use by goroutines and processes, and
// may be passed to a child process (its handle is the path; see the package
// doc, "Sharing"). A FileMutex must not be copied. The zero FileMutex is
// not usable: get one from [NewFileMutex]. No method returns a slice.
type FileMutex struct {
	_      noCopy
	path   string
	file   *os.File
	fd     int
	mapped []byte
	rec    fileRecord

	gate    gate
	rsem    chan struct{} // a cancellable mutex: guards readers and the shared flock
	readers int

	// refs counts the handle (1 until Close) plus the calls in flight;
	// closedRef is added by Close. The last one out releases file and
	// mapped, once (freed).
	refs    atomic.Int64
	freed   atomic.Bool
	closed  atomic.Bool
	closing chan struct{} // closed by Close: wakes waiters in the gate and rsem
	closer  robust.Closer // closed by Close: wakes waiters for the flock
}

const closedRef = 1 << 40

// NewFileMutex opens the lock file at path, creating it (mode 0600) if it
// does not exist. It never follows a symbolic link (opening one fails). A
// path that is not a lock file (not a regular file, or not of a lock file's
// size) is an error that wraps [os.ErrInvalid]; a lock file whose record is
// impossible, [ErrCorrupt].
func NewFileMutex(path string) (*FileMutex, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("semaphore: lock file %s: %w", path, err)
	}
	f, mapped, err := openLockFile(abs)
	if err != nil {
		return nil, fmt.Errorf("semaphore: lock file %s: %w", path, err)
	}
	rec, err := fileRecordAt(mapped)
	if err != nil {
		unmapRecord(mapped)
		f.Close()
		return nil, fmt.Errorf("semaphore: lock file %s: %w", path, err)
	}
	m := &FileMutex{path: abs, file: f, fd: int(f.Fd()), mapped: mapped, rec: rec,
		rsem: make(chan struct{}, 1), closing: make(chan struct{})}
	m.refs.Store(1)
	return m, nil
}

// Path returns the lock file's absolute path.
func (m *FileMutex) Path() string { return m.path }

// enter registers a call in flight, unless m is closed.
func (m *FileMutex) enter() error {
	if m.refs.Add(1) >= closedRef {
		m.leave()
		return os.ErrClosed
	}
	return nil
}

// leave ends a call; the last one out after Close releases the file.
func (m *FileMutex) leave() {
	if m.refs.Add(-1) == closedRef {
		m.free()
	}
}

func (m *FileMutex) free() error {
	if !m.freed.CompareAndSwap(false, true) {
		return nil
	}
	err := unmapRecord(m.mapped)
	if cerr := m.file.Close(); err == nil {
		err = cerr
	}
	return err
}

// Lock locks m exclusively, waiting as long as it takes. It returns nil, or
// [ErrOwnerDead] with the lock held, or [ErrNotRecoverable] (not held), or
// [os.ErrClosed].
func (m *FileMutex) Lock() error { return m.LockContext(context.Background()) }

// LockContext is [FileMutex.Lock] that gives up when ctx is done, returning
// ctx.Err() without the lock; but before it gives up it tries once more,
// so a holder that died (which the kernel released) is reported with
// [ErrOwnerDead], the lock then held, however short the deadline.
func (m *FileMutex) LockContext(ctx context.Context) error {
	if err := m.enter(); err != nil {
		return err
	}
	defer m.leave()
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
	if err := m.enter(); err != nil {
		return false, err
	}
	defer m.leave()
	if !m.gate.try(true) {
		return false, nil
	}
	ok, err := flockTry(m.fd, lockEx)
	if !ok || err != nil {
		m.gate.release(true)
		return false, err
	}
	err = m.acquiredEx()
	return !errors.Is(err, ErrNotRecoverable) && !errors.Is(err, os.ErrClosed), err
}

func (m *FileMutex) acquiredEx() error {
	if m.closed.Load() {
		m.drop(true)
		return os.ErrClosed
	}
	err := m.rec.acquired()
	if errors.Is(err, ErrNotRecoverable) {
		m.drop(true)
	}
	return err
}

// drop releases the flock and the gate.
func (m *FileMutex) drop(write bool) error {
	err := m.funlock()
	m.gate.release(write)
	return err
}

// funlock releases the flock and wakes the waiters, of any process, that
// announced themselves on the record. The Add is the full fence between
// the release and the look at the sleepers word that robust's "Waiting"
// requires (the waiter announces, then tries the flock): a system call is
// not one.
func (m *FileMutex) funlock() error {
	err := flockUnlock(m.fd)
	if m.rec.sleepers.Add(0)&1 != 0 {
		robust.Wake(m.rec.sleepers)
	}
	return err
}

// Unlock releases an exclusive lock. Unlocking a FileMutex this process does
// not hold exclusively returns [ErrNotLocked]. Unlocking an inconsistent
// one (after [ErrOwnerDead], without MarkConsistent) makes it
// unrecoverable.
func (m *FileMutex) Unlock() error {
	if err := m.enter(); err != nil {
		return err
	}
	defer m.leave()
	if !m.gate.holdsWrite() {
		return ErrNotLocked
	}
	m.rec.releasing()
	return m.drop(true)
}

// MarkConsistent tells m that the data it guards was repaired after
// [ErrOwnerDead]; the caller must hold m exclusively.
func (m *FileMutex) MarkConsistent() error {
	if err := m.enter(); err != nil {
		return err
	}
	defer m.leave()
	if !m.gate.holdsWrite() {
		return ErrNotLocked
	}
	m.rec.markConsistent()
	return nil
}

// LockShared takes m shared, with other readers in any process, waiting
// as long as it takes: a reader lock (flock's LOCK_SH), not Python's
// re-entrant RLock. If the last exclusive holder died holding it,
// LockShared returns [ErrOwnerDead] with the shared lock held; only an
// exclusive holder can repair and MarkConsistent.
func (m *FileMutex) LockShared() error { return m.LockSharedContext(context.Background()) }

// LockSharedContext is [FileMutex.LockShared] that gives up when ctx is done.
func (m *FileMutex) LockSharedContext(ctx context.Context) error {
	if err := m.enter(); err != nil {
		return err
	}
	defer m.leave()
	if err := m.gate.acquire(ctx, false); err != nil {
		return err
	}
	select {
	case m.rsem <- struct{}{}:
	case <-ctx.Done():
		m.gate.release(false)
		return ctx.Err()
	case <-m.closing:
		m.gate.release(false)
		return os.ErrClosed
	}
	if m.readers == 0 {
		if err := m.flock(ctx, lockSh); err != nil {
			<-m.rsem
			m.gate.release(false)
			return err
		}
	}
	m.readers++
	<-m.rsem
	err := m.rec.shared()
	if errors.Is(err, ErrNotRecoverable) {
		m.unlockShared()
	}
	return err
}

// UnlockShared releases a shared lock; without one it returns [ErrNotLocked].
func (m *FileMutex) UnlockShared() error {
	if err := m.enter(); err != nil {
		return err
	}
	defer m.leave()
	return m.unlockShared()
}

func (m *FileMutex) unlockShared() error {
	m.rsem <- struct{}{}
	defer func() { <-m.rsem }()
	if m.readers == 0 {
		return ErrNotLocked
	}
	m.readers--
	var err error
	if m.readers == 0 {
		err = m.funlock()
	}
	m.gate.release(false)
	return err
}

// flock takes the file lock, sleeping until it is free (see "File
// mutex"). It returns os.ErrClosed, without the lock, if m was closed
// meanwhile.
func (m *FileMutex) flock(ctx context.Context, how int) error {
	var err error
	got := func() bool {
		ok, ferr := flockTry(m.fd, how)
		if ferr != nil {
			err = ferr
			return true
		}
		return ok
	}
	if !got() {
		werr := robust.Wait(ctx, m.rec.sleepers, got, &robust.WaitOptions{
			Closer:  &m.closer,
			Watch:   got,
			Holders: m.holder,
		})
		if werr != nil {
			return werr // without the lock: got never said yes
		}
	}
	if err != nil {
		return err
	}
	if m.closed.Load() {
		m.funlock()
		return os.ErrClosed
	}
	return nil
}

// holder returns the exclusive holder's token, for a waiter to follow.
func (m *FileMutex) holder() []liveness.Token {
	if t := liveness.Token(m.rec.owner.Load()); t != 0 {
		return []liveness.Token{t}
	}
	return nil
}

// Close closes the lock file, once no call of this handle is running. A
// lock this handle holds is then released by the kernel, as if the process
// had died: the next exclusive holder gets [ErrOwnerDead]. Calls waiting in
// this process return [os.ErrClosed], and so do later calls. It is safe to
// call twice.
func (m *FileMutex) Close() error {
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(m.closing)
	m.gate.shut()
	m.closer.Close(m.rec.sleepers) // the mapping lives on: we hold a reference
	if m.refs.Add(closedRef-1) == closedRef {
		return m.free()
	}
	return nil
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
	m.path, m.file, m.fd, m.mapped, m.rec = o.path, o.file, o.fd, o.mapped, o.rec
	m.rsem, m.closing = o.rsem, o.closing
	m.refs.Store(1)
	return nil
}

// gate is the in-process read-write lock in front of flock; unlike
// sync.RWMutex, acquiring it can be cancelled.
type gate struct {
	mu      sync.Mutex
	shutted bool // Close was called: waiters and later callers fail
	writer  bool
	readers int
	ch      chan struct{} // closed on release; made only when someone waits
}

func (g *gate) try(write bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.shutted && g.takeLocked(write)
}

// shut fails every waiter and later caller with os.ErrClosed.
func (g *gate) shut() {
	g.mu.Lock()
	g.shutted = true
	if g.ch != nil {
		close(g.ch)
		g.ch = nil
	}
	g.mu.Unlock()
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
		if g.shutted {
			g.mu.Unlock()
			return os.ErrClosed
		}
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
