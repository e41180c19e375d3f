//go:build linux

package liveness

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ipckit/ipckit/internal/shmfile"
)

// Path returns the registry file of uid.
func Path(uid uint32) string {
	return shmfile.Dir + "/.ipckit-live-" + strconv.FormatUint(uint64(uid), 10)
}

// registry is an open registry file. Once published in regs it is never
// closed, so its descriptor can be used without holding a reference: a
// registry found unlinked is only forgotten (one descriptor per deletion
// of a registry, which is rare, is the price of calls that allocate
// nothing).
type registry struct {
	f   *os.File // keeps fd open
	fd  uintptr
	uid uint32
	id  uint32 // regBits of a hash of the file's (dev, inode)
}

var (
	// selfToken is this process's token once claimed, 0 before. Check
	// reads it to answer for itself without a system call (an OFD lock
	// does not conflict with its own description, so F_OFD_GETLK on our
	// own byte through our own descriptor would say "unlocked").
	selfToken atomic.Uint64

	// selfReg is the registry holding this process's lock. It is never
	// closed: closing it would release the lock, and the process would
	// look dead to everyone while it still holds its locks.
	selfReg *registry

	claimOnce = sync.OnceValues(claim)

	// regs caches open registries by uid (this process's own included);
	// dropped keeps those found unlinked, which stay open.
	regs struct {
		sync.Mutex
		m map[uint32]*registry
	}
	dropped []*registry
)

// Self returns this process's token, claiming it on the first call. The
// token is the same for every goroutine and for the whole life of the
// process. It fails, wrapping [ErrRegistry], when the registry cannot be
// made or opened (no /dev/shm, a file of that name owned by another user)
// or when no byte can be locked.
func Self() (Token, error) { return claimOnce() }

func claim() (Token, error) {
	uid := uint32(os.Geteuid())
	r, err := openOwn(uid)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrRegistry, err)
	}
	// Nonces are drawn at random (see "Liveness tokens"); a taken byte
	// (another live process) is EAGAIN or EACCES. With up to half the
	// nonces in use, 64 draws all fail with probability 2^-64.
	for range 64 {
		nonce := rand.Uint32N(nonceMask) + 1
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: int64(nonce), Len: 1}
		lerr := unix.FcntlFlock(r.fd, unix.F_OFD_SETLK, &lk)
		switch {
		case lerr == nil:
			t := makeToken(uid, r.id, nonce)
			selfReg = r
			regs.Lock()
			if regs.m == nil {
				regs.m = map[uint32]*registry{}
			}
			regs.m[uid] = r // replaces (without closing) a read-only copy Check opened
			regs.Unlock()
			selfToken.Store(uint64(t))
			return t, nil
		case errors.Is(lerr, unix.EAGAIN), errors.Is(lerr, unix.EACCES):
			continue
		default:
			r.f.Close()
			return 0, fmt.Errorf("%w: lock a byte of %s: %w", ErrRegistry, r.f.Name(), lerr)
		}
	}
	r.f.Close()
	return 0, fmt.Errorf("%w: no free byte in %s", ErrRegistry, r.f.Name())
}

// openOwn opens this process's registry for writing, making it if it does
// not exist. The registry holds no data, so a file just made is ready at
// once and two processes making it at once need no other agreement than
// O_EXCL: the loser opens the winner's.
func openOwn(uid uint32) (*registry, error) {
	path := Path(uid)
	const flags = unix.O_RDWR | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NOCTTY
	for range 8 {
		fd, err := unix.Open(path, flags|unix.O_CREAT|unix.O_EXCL, 0o644)
		if err == nil {
			// The umask may have narrowed the mode: other uids must be
			// able to open the registry to read the locks.
			if err := unix.Fchmod(fd, 0o644); err != nil {
				unix.Close(fd)
				return nil, &os.PathError{Op: "chmod", Path: path, Err: err}
			}
			return newRegistry(fd, path, uid, true)
		}
		if !errors.Is(err, unix.EEXIST) {
			return nil, &os.PathError{Op: "create", Path: path, Err: err}
		}
		fd, err = unix.Open(path, flags, 0)
		if errors.Is(err, unix.ENOENT) {
			continue // removed between the two opens: make it again
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return newRegistry(fd, path, uid, true)
	}
	return nil, &os.PathError{Op: "open", Path: path, Err: errors.New("keeps disappearing")}
}

// openOther opens uid's registry read-only, to query it.
func openOther(uid uint32) (*registry, error) {
	path := Path(uid)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return newRegistry(fd, path, uid, false)
}

// newRegistry checks that fd is a regular file owned by uid (with no
// write permission for others, when it is ours: anyone who can write it can
// fake life) and wraps it. It closes fd on error.
func newRegistry(fd int, path string, uid uint32, own bool) (*registry, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		unix.Close(fd)
		return nil, &os.PathError{Op: "open", Path: path, Err: shmfile.ErrNotRegular}
	case st.Uid != uid:
		unix.Close(fd)
		return nil, &os.PathError{Op: "open", Path: path, Err: shmfile.ErrOwner}
	case own && st.Mode&0o022 != 0:
		if err := unix.Fchmod(fd, 0o644); err != nil {
			unix.Close(fd)
			return nil, &os.PathError{Op: "chmod", Path: path, Err: err}
		}
	}
	return &registry{f: os.NewFile(uintptr(fd), path), fd: uintptr(fd), uid: uid, id: regID(uint64(st.Dev), st.Ino)}, nil
}

// regID hashes a file's identity to regBits bits (a SplitMix64 finaliser).
func regID(dev, ino uint64) uint32 {
	x := dev*0x9e3779b97f4a7c15 ^ ino
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return uint32(x>>(64-regBits)) & regMask
}

// lookup returns the cached registry of uid, opening it if need be.
func lookup(uid uint32) (*registry, error) {
	regs.Lock()
	r := regs.m[uid]
	regs.Unlock()
	if r != nil {
		return r, nil
	}
	r, err := openOther(uid)
	if err != nil {
		return nil, err
	}
	regs.Lock()
	defer regs.Unlock()
	if old := regs.m[uid]; old != nil {
		r.f.Close() // never published
		return old, nil
	}
	if regs.m == nil {
		regs.m = map[uint32]*registry{}
	}
	regs.m[uid] = r
	return r, nil
}

// drop forgets a registry found unlinked, so the next lookup opens the
// file now at its path. It does not close it (see registry).
func drop(r *registry) {
	regs.Lock()
	if regs.m[r.uid] == r {
		delete(regs.m, r.uid)
		dropped = append(dropped, r)
	}
	regs.Unlock()
}

// Check reports whether the process t names is alive. It makes two
// non-blocking system calls (F_OFD_GETLK and fstat) on a registry it keeps
// open, raw (they do not wake the Go scheduler), and none for this
// process's own token; the first check of a uid's token opens its
// registry. It is safe for concurrent use. An invalid token is [Unknown].
func Check(t Token) State {
	if !t.Valid() {
		return Unknown
	}
	if uint64(t) == selfToken.Load() {
		return Alive
	}
	for range 2 {
		r, err := lookup(t.UID())
		if err != nil {
			return Unknown
		}
		st, stale := r.query(t.Nonce())
		if stale {
			drop(r)
			continue
		}
		if r.id != t.Registry() {
			return Unknown // not the registry the holder claimed in
		}
		return st
	}
	return Unknown
}

// query asks whether a write lock holds byte nonce. stale reports that the
// file has been unlinked since it was opened: its locks no
// longer say anything about processes that claimed after that.
//
// The order matters: the lock is read first and the link count after. A
// holder that claimed in a registry made after this one was unlinked must
// have claimed after the unlink; if the link count, read after the lock,
// is still nonzero, the unlink had not happened when the lock was read.
func (r *registry) query(nonce uint32) (s State, stale bool) {
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart, Start: int64(nonce), Len: 1}
	if err := getlk(r.fd, &lk); err != nil {
		return Unknown, false
	}
	var st unix.Stat_t
	switch err := fstat(r.fd, &st); {
	case err != nil:
		return Unknown, false
	case st.Nlink == 0:
		return Unknown, true
	case lk.Type == unix.F_UNLCK:
		return Dead, false
	}
	return Alive, false
}
