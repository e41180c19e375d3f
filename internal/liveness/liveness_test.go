//go:build linux

package liveness

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipckit/ipckit/internal/helperproc"
)

func TestMain(m *testing.M) {
	// claim: print this process's token, then live until stdin closes.
	helperproc.Register("claim", func([]string) error {
		t, err := Self()
		if err != nil {
			return err
		}
		fmt.Printf("token %d pid %d\n", uint64(t), os.Getpid())
		io.Copy(io.Discard, os.Stdin)
		return nil
	})
	// fds: print every inherited descriptor that is a registry, before
	// claiming; then claim.
	helperproc.Register("fds", func([]string) error {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			return err
		}
		for _, e := range ents {
			if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.Contains(l, ".ipckit-live-") {
				fmt.Printf("inherited %s -> %s\n", e.Name(), l)
			}
		}
		if _, err := Self(); err != nil {
			return err
		}
		fmt.Println("done")
		return nil
	})
	// check: print what Check says of each token in args.
	helperproc.Register("check", func(args []string) error {
		for _, a := range args {
			v, err := strconv.ParseUint(a, 10, 64)
			if err != nil {
				return err
			}
			fmt.Printf("%s\n", Check(Token(v)))
		}
		return nil
	})
	helperproc.Run(m)
}

func mustSelf(t *testing.T) Token {
	t.Helper()
	tok, err := Self()
	if err != nil {
		t.Fatalf("Self: %v", err)
	}
	return tok
}

func TestSelf(t *testing.T) {
	tok := mustSelf(t)
	if !tok.Valid() || tok&^Mask != 0 {
		t.Fatalf("Self() = %v: not a valid token", tok)
	}
	if again := mustSelf(t); again != tok {
		t.Fatalf("Self() changed: %v then %v", tok, again)
	}
	if tok.UID() != uint32(os.Geteuid()) {
		t.Fatalf("token uid %d, euid %d", tok.UID(), os.Geteuid())
	}
	if s := Check(tok); s != Alive {
		t.Fatalf("Check(self) = %v", s)
	}
	fi, err := os.Lstat(Path(tok.UID()))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 || fi.Size() != 0 || st.Uid != uint32(os.Geteuid()) {
		t.Fatalf("registry %s: mode %v, size %d, uid %d", fi.Name(), fi.Mode(), fi.Size(), st.Uid)
	}
	if regID(uint64(st.Dev), st.Ino) != tok.Registry() {
		t.Fatal("the token's registry bits are not the registry's")
	}
}

func TestTokenLayout(t *testing.T) {
	for _, tc := range []struct {
		uid, reg, nonce uint32
	}{{0, 0, 1}, {1000, 0x3ff, nonceMask}, {^uint32(0), 0x155, 12345}} {
		tok := makeToken(tc.uid, tc.reg, tc.nonce)
		if tok.UID() != tc.uid || tok.Registry() != tc.reg || tok.Nonce() != tc.nonce || !tok.Valid() {
			t.Errorf("makeToken(%d, %#x, %d) = %#x reads back as %v", tc.uid, tc.reg, tc.nonce, uint64(tok), tok)
		}
		if tok&^Mask != 0 {
			t.Errorf("%v uses bits above Mask", tok)
		}
	}
	for _, bad := range []Token{0, 1 << Bits, 1 << 63, makeToken(5, 5, 0), makeToken(5, 5, 7) | 1<<62} {
		if bad.Valid() {
			t.Errorf("%#x is valid", uint64(bad))
		}
		if s := Check(bad); s != Unknown {
			t.Errorf("Check(%#x) = %v, want unknown", uint64(bad), s)
		}
	}
}

// startClaim starts a "claim" helper (in a PID namespace of its own, with
// pidns) and returns it with its stdin, its token and its pid as it sees
// it.
func startClaim(t *testing.T, pidns bool) (*exec.Cmd, io.WriteCloser, Token, int) {
	t.Helper()
	cmd := helperproc.Command(t, "claim")
	if pidns {
		helperproc.InPIDNamespace(t, cmd)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	line := helperproc.Start(t, cmd).Line(t)
	var v uint64
	var pid int
	if _, err := fmt.Sscanf(line, "token %d pid %d", &v, &pid); err != nil {
		t.Fatalf("helper said %q: %v", line, err)
	}
	return cmd, in, Token(v), pid
}

func TestChildAliveThenDead(t *testing.T) {
	self := mustSelf(t)
	cmd, _, tok, _ := startClaim(t, false)
	if tok == self || !tok.Valid() {
		t.Fatalf("child token %v (parent %v)", tok, self)
	}
	if s := Check(tok); s != Alive {
		t.Fatalf("Check(live child) = %v", s)
	}
	helperproc.Kill(cmd)
	if s := Check(tok); s != Dead {
		t.Fatalf("Check(child killed with SIGKILL) = %v", s)
	}
	if s := Check(self); s != Alive {
		t.Fatalf("after the child died, Check(self) = %v", s)
	}
}

// TestExitWithoutKill: a child that exits normally (without unlocking
// anything) is dead as well.
func TestExitWithoutKill(t *testing.T) {
	cmd, in, tok, _ := startClaim(t, false)
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if s := Check(tok); s != Dead {
		t.Fatalf("Check(exited child) = %v", s)
	}
}

// TestNoInheritedRegistry: a child started by fork and exec inherits no
// registry descriptor, so it cannot keep its parent's lock alive, and
// claims a token of its own.
func TestNoInheritedRegistry(t *testing.T) {
	mustSelf(t)
	out, err := helperproc.Command(t, "fds").Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "done\n" {
		t.Fatalf("child saw:\n%s", out)
	}
}

func TestUnknownRegistry(t *testing.T) {
	self := mustSelf(t)
	// A uid nobody has: no registry.
	if s := Check(makeToken(4_000_000_001, 1, 1)); s != Unknown {
		t.Fatalf("Check(token of a uid without a registry) = %v", s)
	}
	// Our registry, a byte nobody holds, but the wrong registry bits: the
	// token was not claimed in this file, so no proof.
	if s := Check(makeToken(self.UID(), self.Registry()^1, self.Nonce()^1)); s != Unknown {
		t.Fatalf("Check(token of another registry) = %v", s)
	}
	// The right bits and a byte nobody holds: dead.
	n := self.Nonce() ^ 1
	if n == 0 {
		n = 2
	}
	if s := Check(makeToken(self.UID(), self.Registry(), n)); s != Dead {
		t.Fatalf("Check(unheld byte) = %v", s)
	}
}

// fakeRegistry makes the registry of a uid nobody uses, as root, and locks
// byte nonce in it through a description of its own (as another process
// would). It returns the token, and a function that unlocks.
func fakeRegistry(t *testing.T, uid, nonce uint32) (Token, func()) {
	t.Helper()
	path := Path(uid)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Chown(int(uid), 0); err != nil {
		os.Remove(path)
		t.Skipf("cannot give a file to uid %d: %v", uid, err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: int64(nonce), Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	unlock := func() {
		lk := unix.Flock_t{Type: unix.F_UNLCK, Start: int64(nonce), Len: 1}
		if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
			t.Fatal(err)
		}
	}
	return makeToken(uid, regID(uint64(st.Dev), st.Ino), nonce), unlock
}

// TestOtherUID: a token of another uid is read from that uid's registry;
// a registry deleted and made again since the claim proves nothing.
func TestOtherUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make another uid's registry")
	}
	const uid uint32 = 4_000_000_123
	path := Path(uid)
	os.Remove(path) // a leftover of an aborted run
	t.Cleanup(func() { os.Remove(path) })
	tok, unlock := fakeRegistry(t, uid, 77)
	if s := Check(tok); s != Alive {
		t.Fatalf("Check(held byte of uid %d) = %v", uid, s)
	}
	unlock()
	if s := Check(tok); s != Dead {
		t.Fatalf("Check(released byte of uid %d) = %v", uid, s)
	}
	// Lock the byte again, then delete the registry and make a new one in
	// which nobody holds it. Check has the old file open: it must notice
	// the unlink, open the new file, and find that file is not the one
	// the token was claimed in: unknown, not dead.
	tok2, _ := fakeRegistryAgain(t, path, uid, 77)
	if s := Check(tok2); s != Alive {
		t.Fatalf("Check(held byte) = %v", s)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if s := Check(tok2); s != Unknown {
		t.Fatalf("Check(token of a deleted registry) = %v, want unknown", s)
	}
	newTok, _ := fakeRegistry(t, uid, 99)
	if newTok.Registry() == tok2.Registry() {
		t.Skip("the new registry hashes like the old one (1 in 1024): nothing to tell apart")
	}
	if s := Check(tok2); s != Unknown {
		t.Fatalf("Check(token of a registry made again) = %v, want unknown", s)
	}
	if s := Check(newTok); s != Alive {
		t.Fatalf("Check(token in the new registry) = %v", s)
	}
	// A registry owned by someone else than its uid is not trusted.
	if err := os.Chown(path, 0, 0); err != nil {
		t.Fatal(err)
	}
	dropAll()
	if s := Check(newTok); s != Unknown {
		t.Fatalf("Check(token in a registry of the wrong owner) = %v, want unknown", s)
	}
}

// fakeRegistryAgain locks byte nonce of the existing registry at path
// through a new description.
func fakeRegistryAgain(t *testing.T, path string, uid, nonce uint32) (Token, *os.File) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: int64(nonce), Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return makeToken(uid, regID(uint64(st.Dev), st.Ino), nonce), f
}

// dropAll forgets every cached registry but this process's own.
func dropAll() {
	regs.Lock()
	var old []*registry
	for _, r := range regs.m {
		if r != selfReg {
			old = append(old, r)
		}
	}
	regs.Unlock()
	for _, r := range old {
		drop(r)
	}
}

// TestPIDNamespace: a process in its own PID namespace, which sees other
// pids than ours (it is pid 1 there), is alive for us while it lives and
// dead once killed; and it sees us alive, though it cannot see our pid.
func TestPIDNamespace(t *testing.T) {
	helperproc.NeedUnshare(t)
	self := mustSelf(t)
	cmd, _, tok, pid := startClaim(t, true)
	if pid != 1 {
		t.Fatalf("helper is pid %d in its namespace, want 1", pid)
	}
	if _, err := os.Stat(filepath.Join("/proc", "1", "stat")); err != nil {
		t.Fatal(err)
	}
	if s := Check(tok); s != Alive {
		t.Fatalf("Check(live process in another PID namespace) = %v", s)
	}
	// From inside: a fresh namespace checking our token and the helper's.
	check := helperproc.Command(t, "check", strconv.FormatUint(uint64(self), 10), strconv.FormatUint(uint64(tok), 10))
	out, err := helperproc.InPIDNamespace(t, check).Output()
	if err != nil {
		t.Fatalf("check from inside: %v", err)
	}
	if got := string(out); got != "alive\nalive\n" {
		t.Fatalf("from another PID namespace, Check(us), Check(helper) = %q", got)
	}
	helperproc.Kill(cmd) // unshare; --kill-child takes the namespace's pid 1 with it
	deadline := time.Now().Add(5 * time.Second)
	for Check(tok) != Dead {
		if time.Now().After(deadline) {
			t.Fatalf("Check(killed process in another PID namespace) = %v", Check(tok))
		}
		time.Sleep(time.Millisecond)
	}
}

func BenchmarkCheckAlive(b *testing.B) {
	self, err := Self()
	if err != nil {
		b.Fatal(err)
	}
	// Another live token of our uid: a byte we lock through a second
	// description, as another process would.
	f, err := os.OpenFile(Path(self.UID()), os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	n := self.Nonce()%nonceMask + 1
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: int64(n), Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		b.Skip("byte taken:", err)
	}
	tok := makeToken(self.UID(), self.Registry(), n)
	b.ReportAllocs()
	for b.Loop() {
		if Check(tok) != Alive {
			b.Fatal("not alive")
		}
	}
}

// TestNotify: a registered function runs as soon as the watched process
// dies (SIGKILL), not before; a stopped registration never runs; a token
// that is already dead notifies at once.
func TestNotify(t *testing.T) {
	cmd, _, tok, _ := startClaim(t, false)
	fired := make(chan time.Time, 1)
	stopped := make(chan struct{}, 1)
	Notify(tok, func() { fired <- time.Now() })
	stop := Notify(tok, func() { stopped <- struct{}{} })
	stop()
	select {
	case <-fired:
		t.Fatal("notified while the process lives")
	case <-time.After(50 * time.Millisecond):
	}
	killed := time.Now()
	helperproc.Kill(cmd)
	select {
	case at := <-fired:
		t.Logf("notified %v after the kill", at.Sub(killed))
	case <-time.After(5 * time.Second):
		t.Fatal("not notified of the death")
	}
	select {
	case <-stopped:
		t.Fatal("a stopped registration ran")
	case <-time.After(20 * time.Millisecond):
	}
	// Already dead.
	again := make(chan struct{})
	Notify(tok, func() { close(again) })
	select {
	case <-again:
	case <-time.After(5 * time.Second):
		t.Fatal("not notified of a process already dead")
	}
	// Our own token and invalid ones are never watched.
	self := mustSelf(t)
	Notify(self, func() { t.Error("notified of our own death") })
	Notify(0, func() { t.Error("notified of token 0") })
	deadline := time.Now().Add(5 * time.Second)
	for watchers() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d watchers left", watchers())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestNotifyPIDNamespace: the death of a process in another PID namespace
// is notified too.
func TestNotifyPIDNamespace(t *testing.T) {
	helperproc.NeedUnshare(t)
	cmd, _, tok, _ := startClaim(t, true)
	fired := make(chan struct{})
	Notify(tok, func() { close(fired) })
	helperproc.Kill(cmd)
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("not notified of the death of a process in another PID namespace")
	}
}
