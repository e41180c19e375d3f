//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipckit/ipckit/ipcqueue"
	"github.com/ipckit/ipckit/semaphore"
	"github.com/ipckit/ipckit/shm"
)

// A live creator's segment is kept by gc, and said why; once the creator
// is SIGKILLed (and nobody else maps it), gc removes it.
func TestGCKeepsLiveCreatorRemovesKilled(t *testing.T) {
	n := name(t)
	p := start(t, "ready", "create", "bytes", n)
	pid := p.Cmd.Process.Pid

	out := mustIpcs(t, "gc", n)
	if want := fmt.Sprintf("kept %s: its creator, pid %d, is alive", n, pid); !strings.Contains(out, want) {
		t.Fatalf("gc of a live creator's segment said %q, want %q", out, want)
	}
	if !exists(n) {
		t.Fatal("gc removed a segment whose creator is alive")
	}

	p.Kill()
	out = mustIpcs(t, "gc", "-n", n)
	if want := fmt.Sprintf("would remove %s: its creator, pid %d, is dead and nobody uses it", n, pid); !strings.Contains(out, want) {
		t.Fatalf("gc -n after SIGKILL said %q, want %q", out, want)
	}
	if !exists(n) {
		t.Fatal("gc -n removed a segment")
	}
	out = mustIpcs(t, "gc", n)
	if want := fmt.Sprintf("removed %s: its creator, pid %d, is dead", n, pid); !strings.Contains(out, want) {
		t.Fatalf("gc after SIGKILL said %q, want %q", out, want)
	}
	if exists(n) {
		t.Fatal("gc kept a segment whose creator was SIGKILLed and that nobody maps")
	}
}

// A segment whose creator died but that another live process maps is
// kept, with that process named; rm refuses it too, unless -f.
func TestGCKeepsMappedAfterCreatorDied(t *testing.T) {
	n := name(t)
	creator := start(t, "ready", "create", "bytes", n)
	user := start(t, "ready", "open", n)
	creator.Kill()

	o := lsOne(t, n)
	if o["Creator"] != "dead" || !slices.Contains(pids(o), user.Cmd.Process.Pid) {
		t.Fatalf("ls says creator %v, pids %v; want dead, and pid %d among the users", o["Creator"], o["Pids"], user.Cmd.Process.Pid)
	}
	out := mustIpcs(t, "gc", n)
	if want := fmt.Sprintf("kept %s: in use by pid %d", n, user.Cmd.Process.Pid); !strings.Contains(out, want) {
		t.Fatalf("gc said %q, want %q", out, want)
	}
	if !exists(n) {
		t.Fatal("gc removed a segment that a live process maps")
	}

	code, _, errs := ipcs(t, "rm", n)
	if code != exitError || !strings.Contains(errs, "in use by pid") || !exists(n) {
		t.Fatalf("rm of a mapped segment exited %d (%q), exists %v; want a refusal", code, errs, exists(n))
	}
	if out := mustIpcs(t, "rm", "-f", n); !strings.Contains(out, "removed "+n) || exists(n) {
		t.Fatalf("rm -f said %q; the file exists: %v", out, exists(n))
	}
}

// inspect of a queue with messages whose consumer lock is held by a
// process that was SIGKILLed shows the messages, the counters and the
// dead holder, and changes nothing.
func TestInspectQueueLockHeldByKilled(t *testing.T) {
	n := name(t)
	q, err := ipcqueue.Create(n, 1024, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	getter := start(t, "getting", "get", n)
	waitFor(t, "the consumer to hold the consumer lock", func() bool {
		st := inspectJSON(t, n)["State"].(map[string]any)
		return st["Consumer"].(map[string]any)["Holder"] != nil
	})
	getter.Kill()
	for _, m := range []string{"one", "two", "three"} {
		if err := q.Put(t.Context(), []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	before := fileBytes(t, n)

	out := mustIpcs(t, "inspect", n)
	for _, want := range []string{
		"kind:     queue", "Messages: 3", "Bytes: 48", "Capacity: 1016", "Puts: 3", "Gets: 0",
		"Producer: free", "Consumer: held by token 0x", " (dead)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	st := inspectJSON(t, n)["State"].(map[string]any)
	if h := st["Consumer"].(map[string]any)["Holder"].(map[string]any); h["State"] != "dead" || !strings.HasPrefix(fmt.Sprint(h["Token"]), "0x") {
		t.Errorf("inspect -json: consumer lock holder %v, want dead, its token a hex string (62 bits do not fit a JSON number)", h)
	}
	if after := fileBytes(t, n); string(after) != string(before) {
		t.Fatal("inspect changed the queue's segment")
	}
	// The queue still works, and its next Get repairs the dead consumer's lock.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if m, err := q.Get(ctx); err != nil || string(m) != "one" {
		t.Fatalf("Get after inspect: %q, %v", m, err)
	}
}

// inspect of a Mutex whose holder was SIGKILLed shows it dead, and leaves
// the lock to be taken over by the next Lock (ErrOwnerDead), as if ipcs had
// never looked.
func TestInspectMutexHolderKilled(t *testing.T) {
	n := name(t)
	m, err := semaphore.CreateMutex(n, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	holder := start(t, "locked", "lock", n)
	want := fmt.Sprintf("held by pid %d token 0x", holder.Cmd.Process.Pid)
	if out := mustIpcs(t, "inspect", n); !strings.Contains(out, want) || !strings.Contains(out, "(alive)") {
		t.Fatalf("inspect of a held mutex lacks %q and (alive):\n%s", want, out)
	}
	holder.Kill()
	out := mustIpcs(t, "inspect", n)
	if !strings.Contains(out, "kind:     mutex") || !strings.Contains(out, "(dead)") {
		t.Fatalf("inspect of a mutex whose holder died:\n%s", out)
	}
	if err := m.Lock(); !errors.Is(err, semaphore.ErrOwnerDead) {
		t.Fatalf("Lock after inspect: %v, want ErrOwnerDead (inspect must not take the lock over)", err)
	}
	m.MarkConsistent()
	m.Unlock()
}

// Corrupt headers, a truncated file, a symbolic link and a FIFO in
// /dev/shm are each listed with the sentinel error opening them gives,
// and none stops the listing, nor gc (which keeps them all).
func TestBadFilesListed(t *testing.T) {
	good := name(t)
	if s, err := shm.Create(good, 64, nil); err != nil {
		t.Fatal(err)
	} else {
		s.Close()
	}
	img := fileBytes(t, good)
	bad := map[string]string{} // name -> sentinel
	put := func(sentinel string, make func(path string) error) {
		n := name(t)
		if err := make(shm.Path(n)); err != nil {
			t.Fatal(err)
		}
		bad[n] = sentinel
	}
	flip := func(off int) func(string) error {
		return func(p string) error {
			b := slices.Clone(img)
			b[off] ^= 0xff
			return os.WriteFile(p, b, 0o600)
		}
	}
	put("shm.ErrBadMagic", flip(0))
	put("shm.ErrChecksum", flip(24)) // the creator's pid
	put("shm.ErrVersion", flip(4))
	put("shm.ErrSize", func(p string) error { return os.WriteFile(p, img[:40], 0o600) })
	put("shm.ErrSymlink", func(p string) error { return os.Symlink("/etc/passwd", p) })
	put("shm.ErrNotRegular", func(p string) error { return syscall.Mkfifo(p, 0o600) })
	put("shm.ErrNotRegular", func(p string) error { return os.Mkdir(p, 0o700) })
	t.Cleanup(func() {
		for n := range bad {
			os.Remove(shm.Path(n))
		}
	})

	pattern := good[:strings.LastIndex(good, "-")+1] + "*" // this test process's names
	code, out, errs := ipcs(t, "ls", "-json", pattern)
	if code != 0 {
		t.Fatalf("ls exited %d: %s", code, errs)
	}
	got := map[string]map[string]any{}
	for _, o := range jsonLines(t, out) {
		got[o["Name"].(string)] = o
	}
	if o := got[good]; o == nil || o["Kind"] != "bytes" || o["Error"] != nil {
		t.Errorf("the good segment among bad files: %v", o)
	}
	for n, sentinel := range bad {
		o := got[n]
		if o == nil {
			t.Errorf("%s (%s) not listed", n, sentinel)
			continue
		}
		if o["Sentinel"] != sentinel || o["Error"] == nil || o["Kind"] != nil {
			t.Errorf("%s listed with sentinel %v, error %v, kind %v; want %s", n, o["Sentinel"], o["Error"], o["Kind"], sentinel)
		}
	}
	// The table lists them too, each with its error.
	table := mustIpcs(t, "ls", pattern)
	for n, sentinel := range bad {
		if !strings.Contains(table, n) || !strings.Contains(table, sentinel+": ") {
			t.Errorf("table lacks %s with %s:\n%s", n, sentinel, table)
		}
	}
	// gc keeps every one of them, saying why, and removes none.
	out = mustIpcs(t, "gc", pattern)
	for n := range bad {
		if !strings.Contains(out, "kept "+n+": not a segment ipcs can read") || !exists(n) {
			t.Errorf("gc on %s: %q", n, out)
		}
	}
}

// ls -json prints one valid JSON object per line, for named and anonymous
// objects, with the fields the table shows.
func TestLsJSON(t *testing.T) {
	n := name(t)
	creator := start(t, "ready", "create", "queue", n)
	anon := start(t, "ready", "anon")
	apid := anon.Cmd.Process.Pid

	o := lsOne(t, n)
	for _, k := range []string{"Name", "Path", "Kind", "Size", "Mode", "Owner", "CreatorPid", "CreatorStart", "Creator", "Pids", "Created", "AgeSeconds"} {
		if _, ok := o[k]; !ok {
			t.Errorf("ls -json lacks %s: %v", k, o)
		}
	}
	if o["Kind"] != "queue" || o["Creator"] != "alive" || fmt.Sprint(o["CreatorPid"]) != fmt.Sprint(creator.Cmd.Process.Pid) ||
		!slices.Contains(pids(o), creator.Cmd.Process.Pid) || o["Mode"] != "-rw-------" {
		t.Errorf("ls -json of a live queue: %v", o)
	}

	a := lsOne(t, fmt.Sprintf("%d:*", apid))
	if a["Kind"] != "queue" || fmt.Sprint(a["Pid"]) != fmt.Sprint(apid) || !slices.Contains(pids(a), apid) || a["Name"] != nil {
		t.Errorf("ls -json of an anonymous queue: %v", a)
	}
	// inspect by PID:FD reads it.
	label := fmt.Sprintf("%v:%v", a["Pid"], a["FD"])
	if st := inspectJSON(t, label)["State"].(map[string]any); fmt.Sprint(st["Messages"]) != "1" {
		t.Errorf("inspect -json %s: state %v, want 1 message", label, st)
	}
	// gc never touches anonymous segments.
	if out := mustIpcs(t, "gc", fmt.Sprintf("%d:*", apid)); out != "" {
		t.Errorf("gc with an anonymous segment's pattern said %q", out)
	}
}

// watch prints one JSON object per sample when stdout is not a terminal,
// with the counters' rates from the second sample on.
func TestWatchJSON(t *testing.T) {
	n := name(t)
	q, err := ipcqueue.Create(n, 1024, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	q.Put(t.Context(), []byte("x"))
	objs := jsonLines(t, mustIpcs(t, "watch", "-n", "3", "-interval", "10ms", n))
	if len(objs) != 3 {
		t.Fatalf("watch -n 3 printed %d samples", len(objs))
	}
	for i, o := range objs {
		c, _ := o["Counters"].(map[string]any)
		if o["Kind"] != "queue" || fmt.Sprint(c["Puts"]) != "1" {
			t.Errorf("sample %d: %v", i, o)
		}
		if _, ok := o["Rates"]; ok != (i > 0) {
			t.Errorf("sample %d has rates: %v", i, ok)
		}
	}
	if code, _, errs := ipcs(t, "watch", "-n", "1", name(t)); code != exitError || !strings.Contains(errs, "no such file") {
		t.Errorf("watch of a missing segment exited %d: %q", code, errs)
	}
}

// rates divides each counter's growth by the time between two samples.
func TestRates(t *testing.T) {
	t0 := time.Now()
	prev := &sample{Time: t0, Counters: map[string]uint64{"Puts": 10, "Gets": 5}}
	s := &sample{Time: t0.Add(2 * time.Second), Counters: map[string]uint64{"Puts": 30, "Gets": 5, "Waits": 1}}
	r := rates(prev, s)
	if r["Puts"] != 10 || r["Gets"] != 0 || len(r) != 2 {
		t.Fatalf("rates: %v, want Puts 10/s, Gets 0/s, nothing for a new counter", r)
	}
}

// A process ipcs may not read is reported as such: not among a segment's
// users, but among the processes that could be, and gc keeps the segment.
// As root, ipcs runs as another user; as another user, the process
// holding the segment makes itself non-dumpable.
func TestUnreadableProcesses(t *testing.T) {
	n := name(t)
	start(t, "ready", "create", "bytes", n).Kill()
	var holder int
	var ls, gc string
	if os.Geteuid() == 0 {
		// Let the other user open it (so that its processes could hold it).
		if err := os.Chmod(shm.Path(n), 0o666); err != nil {
			t.Fatal(err)
		}
		seg, err := shm.Open(n)
		if err != nil {
			t.Fatal(err)
		}
		defer seg.Close()
		holder = os.Getpid()
		ls = asUser(t, 65534, "ipcs", "ls", "-json", n)
		gc = asUser(t, 65534, "ipcs", "gc", n)
	} else {
		// The file is 0600: the hidden holder counts because it is of
		// the file's owner (its euid, from /proc/PID/status).
		holder = start(t, "ready", "hide", n).Cmd.Process.Pid
		_, ls, _ = ipcs(t, "ls", "-json", n)
		_, gc, _ = ipcs(t, "gc", n)
	}
	o := jsonLines(t, ls)
	if len(o) != 1 {
		t.Fatalf("ls: %v", o)
	}
	var hidden []int
	list, _ := o[0]["Unreadable"].([]any)
	for _, p := range list {
		var n int
		fmt.Sscan(fmt.Sprint(p), &n)
		hidden = append(hidden, n)
	}
	if slices.Contains(pids(o[0]), holder) || !slices.Contains(hidden, holder) {
		t.Fatalf("ls: pids %v, unreadable %v; want the holder (%d) among the unreadable only", o[0]["Pids"], hidden, holder)
	}
	if want := fmt.Sprintf("kept %s: pid ", n); !strings.Contains(gc, want) || !strings.Contains(gc, "ipcs may not read them") || !exists(n) {
		t.Fatalf("gc of a dead creator's segment that an unreadable process holds: %q", gc)
	}
}

// inspectJSON returns inspect -json's object for target.
func inspectJSON(t *testing.T, target string) map[string]any {
	t.Helper()
	objs := jsonLines(t, mustIpcs(t, "inspect", "-json", target))
	if len(objs) != 1 {
		t.Fatalf("inspect -json printed %d objects", len(objs))
	}
	return objs[0]
}

// fileBytes returns the named segment's bytes.
func fileBytes(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(shm.Path(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
