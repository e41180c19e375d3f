//go:build linux

package liveness

import (
	"io"
	"sync"

	"golang.org/x/sys/unix"
)

// Death notification
//
// Checking a holder every so often costs a waiting Go process more than the
// checks suggest (each timed wake-up of an idle Go process costs some
// hundreds of microseconds of scheduler work on a VM), and finds the death
// late. The kernel can say it at once: a request for a read lock on the
// holder's byte, made with F_OFD_SETLKW, blocks exactly as long as the
// holder's write lock is there, and is granted the moment the holder dies.
// So Notify starts, per token and per process, one goroutine that makes
// that request (on a thread of its own, blocked in the kernel, using no
// CPU), releases the read lock as soon as it is granted, and calls the
// functions registered for that token.
//
// The price is that a request cannot be withdrawn: a blocked F_OFD_SETLKW
// is restarted after signals (the Go runtime installs its handlers with
// SA_RESTART), and closing the descriptor does not end it. So the goroutine
// (and its thread) lives until the holder dies, even when nobody waits for
// it any more; there is one per live process this process ever waited for,
// which bounds them by the processes it works with. A read lock does not
// conflict with the F_RDLCK queries of Check, so the watchers never make a
// dead process look alive; while one is granted (a moment), a new process
// cannot claim that byte and picks another.
//
// One thing it cannot see: if the holder dies and a new process claims the
// same byte before the request is granted (a nonce reused within
// microseconds, 2^-20 per claim), the request waits for the new process.
// Callers keep a slow periodic check for that, and for tokens whose
// registry cannot be opened.

type deathWatch struct {
	fs   map[uint64]func()
	next uint64
	done bool
}

var deaths struct {
	sync.Mutex
	m map[Token]*deathWatch
}

// Notify arranges for f to run, on a goroutine of its own, as soon as the
// process t names is found dead; if it already is, f runs at once. stop
// cancels the arrangement (f may still run if it has begun). For this
// process's own token, an invalid token, or one whose registry cannot be
// watched, f never runs: callers must not rely on Notify alone (see "Death
// notification"). It is safe for concurrent use.
func Notify(t Token, f func()) (stop func()) {
	if !t.Valid() || uint64(t) == selfToken.Load() {
		return func() {}
	}
	deaths.Lock()
	defer deaths.Unlock()
	if deaths.m == nil {
		deaths.m = map[Token]*deathWatch{}
	}
	dw := deaths.m[t]
	if dw == nil {
		dw = &deathWatch{fs: map[uint64]func(){}}
		deaths.m[t] = dw
		go dw.run(t)
	}
	id := dw.next
	dw.next++
	dw.fs[id] = f
	return func() {
		deaths.Lock()
		delete(dw.fs, id)
		deaths.Unlock()
	}
}

// run waits for t's holder to die, then calls the registered functions.
func (dw *deathWatch) run(t Token) {
	dead := waitDead(t)
	deaths.Lock()
	delete(deaths.m, t)
	dw.done = true
	fs := dw.fs
	dw.fs = nil
	deaths.Unlock()
	if !dead {
		return // cannot watch: the callers' periodic checks remain
	}
	for _, f := range fs {
		go f()
	}
}

// waitDead blocks until the byte t's holder locks in t's registry is free,
// and reports whether it found it so (false: the registry cannot be
// watched).
func waitDead(t Token) bool {
	r, err := lookup(t.UID())
	if err != nil || r.id != t.Registry() {
		return false
	}
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart, Start: int64(t.Nonce()), Len: 1}
	if err := unix.FcntlFlock(r.fd, unix.F_OFD_SETLKW, &lk); err != nil {
		return false
	}
	// Granted: no write lock on the byte, so its holder is gone. Release
	// the read lock at once (our descriptor may also hold our own write
	// lock, on another byte, which this does not touch).
	lk = unix.Flock_t{Type: unix.F_UNLCK, Whence: io.SeekStart, Start: int64(t.Nonce()), Len: 1}
	unix.FcntlFlock(r.fd, unix.F_OFD_SETLK, &lk)
	// If the registry was unlinked meanwhile, it still held the holder's
	// lock (t's registry bits matched it), so the verdict stands.
	return true
}

// watchers returns how many tokens are being watched (for tests).
func watchers() int {
	deaths.Lock()
	defer deaths.Unlock()
	return len(deaths.m)
}
