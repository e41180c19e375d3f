package liveness

import (
	"errors"
	"fmt"
)

// Liveness tokens
//
// A lock in shared memory must name its holder so that a waiter can tell a
// holder that is slow from one that is dead. ipckit used to name it by pid
// and process start time, read from /proc. That fails in two places: a
// process in another PID namespace (a container sharing /dev/shm but not
// its pids) cannot see the holder's pid at all, or sees another process
// under it, so it robbed live holders; and qemu-user reports a start time in
// /proc/self/stat that differs from the one other processes read. A pid is
// an observer-relative name. What every observer sees alike is kernel state
// attached to a file that all of them open: a lock on an open file
// description.
//
// The registry. Each effective uid has one registry file,
// /dev/shm/.ipckit-live-<uid> (mode 0644, owned by that uid, empty: only
// its inode and its locks matter). A process claims a token by taking a
// write lock (F_OFD_SETLK, F_WRLCK) on one byte of its uid's registry, at an
// offset it picks at random (the nonce), retrying on a byte somebody holds,
// and keeps that open file description for its whole life:
//
//   - The kernel drops an OFD lock when the last descriptor of its open file
//     description is closed, which happens at the process's death, SIGKILL
//     included, and at exec (the descriptor is O_CLOEXEC). Unlike a
//     classic POSIX lock it is not dropped when the process closes some
//     other descriptor of the same file, nor owned by a pid.
//   - Any process that can open the registry asks with F_OFD_GETLK whether
//     a read lock on that byte would conflict, that is whether a write lock
//     is there: yes is [Alive], no is [Dead]. The answer is the same in
//     every PID namespace (the question names a byte, not a process) and
//     under qemu-user (which forwards the fcntl).
//   - A child started by fork and exec (spawn re-executes the same binary)
//     does not inherit its parent's token: the registry descriptor is
//     O_CLOEXEC, and the child's package state starts empty, so it claims
//     a token of its own. (Between fork and exec the child shares the
//     parent's open file description; the lock stays the parent's, as it is
//     released only when the parent's descriptor closes too.)
//   - Goroutines of one process share its token, as they share its pid:
//     the token names a process, and a lock held under it is the process's.
//
// Why a random nonce and no written state. The registry holds no data, so
// there is nothing to initialise (no creation race: O_CREAT|O_EXCL, and an
// open of an existing file, both yield a usable registry at once), nothing
// a crash can leave half-written, and nothing another process can forge:
// the only way to make a byte look alive is to hold a write lock on it,
// which needs the registry open for writing, which needs its owner's uid.
// An observer of another uid opens the registry read-only; it can take read
// locks, which the F_RDLCK query does not see. A nonce is unique among live
// processes (the kernel refuses a second write lock on the byte). A dead
// process's nonce may be picked again later, with probability 2^-20 per
// claim; a token whose nonce was reused reads as alive until the new
// claimant exits. That errs on the safe side (a waiter waits longer), never
// the other way: nothing makes the byte of a live holder look unlocked.
//
// Which registry. The token names the uid, so an observer of any uid finds
// the registry (processes of different uids sharing a 0666 object are
// supported, as long as each registry is readable by the others: it is
// created 0644 and fchmod'ed so the umask cannot narrow it). It also holds
// 10 bits of a hash of the registry's device and inode as the claimant saw
// them. An observer checks them against the file it opened: if they differ,
// the registry was deleted and made again since the claim, or the observer
// sees another /dev/shm than the holder (different mount namespaces
// exchanging a memfd), and the byte it could test proves nothing: the
// answer is [Unknown], and the caller waits instead of robbing.
//
// Unknown means no proof either way: the registry cannot be opened, is not
// a regular file owned by the token's uid, is not the holder's, or the fcntl
// failed. Callers treat it like alive.
//
// Limits and lifetime. A uid can have 2^20-1 live tokens (processes) at
// once; beyond that, claiming fails. The kernel keeps one lock record per
// live process (RLIMIT_LOCKS is not enforced by Linux). A registry is a
// long-lived, machine-wide (per uid) file, like the sem.* files POSIX
// semaphores leave in /dev/shm: it stays in place when its last user exits,
// because deleting it while any process of that uid holds a lock would void
// that process's liveness (its lock lives on the old inode; see "Which
// registry" for how that then fails safe). It is a dot file, so a careless
// `rm /dev/shm/*` does not match it. It holds no data and takes one inode.
// Tests leave it in place too (it is not theirs: other programs of the same
// uid may be using it).
//
// Token layout (62 bits; bits 62 and 63 are always 0, left to the lock
// word's flags):
//
//	bits  0..19  nonce, 1..2^20-1: the byte of the registry the holder locks
//	bits 20..29  registry: 10 bits of a hash of the registry's (dev, inode)
//	bits 30..61  uid: the effective uid whose registry holds the byte
//
// The zero Token names nobody. A token whose nonce is 0 or that sets bit
// 62 or 63 is not valid ([Token.Valid]).

// Token names one process for its whole life; see "Liveness tokens".
type Token uint64

const (
	nonceBits = 20
	regBits   = 10
	uidShift  = nonceBits + regBits

	nonceMask = 1<<nonceBits - 1
	regMask   = 1<<regBits - 1

	// Bits is the width of a token: bits Bits and above are always 0.
	Bits = uidShift + 32
	// Mask covers the bits a token may use.
	Mask Token = 1<<Bits - 1
)

// makeToken packs a token. nonce must be in 1..2^20-1.
func makeToken(uid uint32, reg, nonce uint32) Token {
	return Token(uint64(uid)<<uidShift | uint64(reg&regMask)<<nonceBits | uint64(nonce&nonceMask))
}

// UID returns the effective uid of the process t names.
func (t Token) UID() uint32 { return uint32(t >> uidShift) }

// Nonce returns the registry byte t's holder locks.
func (t Token) Nonce() uint32 { return uint32(t & nonceMask) }

// Registry returns the registry bits of t.
func (t Token) Registry() uint32 { return uint32(t>>nonceBits) & regMask }

// Valid reports whether t is a token a process can hold: nonzero nonce,
// nothing above [Bits].
func (t Token) Valid() bool { return t&^Mask == 0 && t.Nonce() != 0 }

func (t Token) String() string {
	if !t.Valid() {
		return fmt.Sprintf("token(invalid %#x)", uint64(t))
	}
	return fmt.Sprintf("token(uid %d, registry %#x, nonce %d)", t.UID(), t.Registry(), t.Nonce())
}

// State is what [Check] knows of a token's holder.
type State int8

const (
	// Unknown means liveness could not be proven either way: treat the
	// holder as alive.
	Unknown State = iota
	// Alive means the holder's lock is in its registry.
	Alive
	// Dead means the holder's registry is the one it claimed in and holds
	// no lock on its byte: the holder has exited.
	Dead
)

func (s State) String() string {
	switch s {
	case Alive:
		return "alive"
	case Dead:
		return "dead"
	}
	return "unknown"
}

// ErrRegistry means this process could not claim a token: the registry is
// missing, unfit (not a regular file, or another user's), or full.
var ErrRegistry = errors.New("liveness: cannot claim a token")
