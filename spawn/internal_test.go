//go:build linux

package spawn

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestUnregistered starts a name the child does not know: the parent gets
// ErrUnregistered, not a hang.
func TestUnregistered(t *testing.T) {
	p, err := start(t.Context(), &entry{name: "no-such-function", typ: "int"}, []any{wireArg[int]{V: 1}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Wait()
	if !errors.Is(err, ErrUnregistered) || !strings.Contains(err.Error(), "no-such-function") {
		t.Fatalf("Wait = %v, want ErrUnregistered naming the function", err)
	}
	if p.ExitCode() != exitSetup {
		t.Fatalf("ExitCode = %d", p.ExitCode())
	}
}

// TestMismatch starts a registered name with an argument of another type.
func TestMismatch(t *testing.T) {
	p, err := start(t.Context(), &entry{name: "nop", typ: "string"}, []any{wireArg[string]{V: "x"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); !errors.Is(err, ErrMismatch) {
		t.Fatalf("Wait = %v, want ErrMismatch", err)
	}
	// Same type name, but bytes that do not decode as it.
	p, err = start(t.Context(), &entry{name: "nop", typ: "struct {}"}, []any{"not a struct"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); !errors.Is(err, ErrArgument) {
		t.Fatalf("Wait = %v, want ErrArgument", err)
	}
}

func TestRegisterMisuse(t *testing.T) {
	mustPanic := func(what string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", what)
			}
		}()
		f()
	}
	// TestMain has called Main, so any Register now is too late.
	mustPanic("Register after Main", func() {
		Register("late", func(ctx context.Context, _ int) error { return nil })
	})
	mainCalled.Store(false)
	defer mainCalled.Store(true)
	mustPanic("duplicate Register", func() {
		Register("nop", func(ctx context.Context, _ int) error { return nil })
	})
	if lookup("nop").typ != "struct {}" {
		t.Fatal("a duplicate Register replaced the entry")
	}
	if _, err := start(t.Context(), lookup("nop"), []any{wireArg[struct{}]{}}, nil, nil); !errors.Is(err, ErrNoMain) {
		t.Fatalf("start before Main = %v, want ErrNoMain", err)
	}
}

func TestParseEnv(t *testing.T) {
	for _, c := range []struct {
		v    string
		want childSetup
	}{
		{"123:7,12:a:b", childSetup{ppid: 123, ids: []int{7, 12}, name: "a:b"}},
		{"123::a", childSetup{ppid: 123, name: "a"}},
		{"123:0:", childSetup{ppid: 123, ids: []int{0}}},
	} {
		cs, err := parseEnv(c.v)
		if err != nil || cs.ppid != c.want.ppid || !slices.Equal(cs.ids, c.want.ids) || cs.name != c.want.name {
			t.Fatalf("parseEnv(%q) = %+v, %v; want %+v", c.v, cs, err, c.want)
		}
	}
	tooMany := "1:" + strings.Repeat("3,", maxFiles) + "3:n"
	for _, bad := range []string{"", "1", "1:2", "x:1:n", "1:x:n", "0:1:n", "1:-1:n", "1:1,,2:n", "1:1,:n", tooMany} {
		if _, err := parseEnv(bad); err == nil {
			t.Errorf("parseEnv(%q) accepted", bad)
		}
	}
}

func TestStatusRoundTrip(t *testing.T) {
	for _, s := range []status{
		{kind: statusError, msg: "boom"},
		{kind: statusPanic, msg: "v", stack: "goroutine 1 [running]:\n..."},
		{kind: statusError, msg: "w", keys: packKeys([]string{"a", "", "context canceled"})},
		{kind: statusUnregistered},
		{kind: statusArgument, msg: strings.Repeat("x", maxField+10)},
	} {
		got, ok, err := parseStatus(s.marshal())
		if err != nil || !ok {
			t.Fatalf("parseStatus(%v): %v %v", s.kind, ok, err)
		}
		if got.kind != s.kind || got.msg != truncate(s.msg) || got.stack != s.stack || got.keys != s.keys {
			t.Fatalf("round trip of %+v gave %+v", s.kind, got.kind)
		}
	}
	if _, ok, err := parseStatus(nil); ok || err != nil {
		t.Fatal("empty status is not 'no report'")
	}
	if got := unpackKeys(packKeys([]string{"a", "", "bc"})); !slices.Equal(got, []string{"a", "", "bc"}) {
		t.Fatalf("keys round trip: %q", got)
	}
	good := status{kind: statusError, msg: "abc"}.marshal()
	for _, bad := range [][]byte{
		{0}, {99}, good[:len(good)-1], append(bytes.Clone(good), 0),
		{statusError, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		if _, _, err := parseStatus(bad); !errors.Is(err, ErrStatus) {
			t.Errorf("parseStatus(%x) = %v, want ErrStatus", bad, err)
		}
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add(status{kind: statusPanic, msg: "v", stack: "s"}.marshal())
	f.Add([]byte{statusError, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, ok, err := parseStatus(b)
		if err != nil || !ok {
			return
		}
		if !bytes.Equal(s.marshal(), b) && len(s.msg) <= maxField && len(s.stack) <= maxField && len(s.keys) <= maxField {
			// Non-minimal varints parse but re-encode shorter; otherwise
			// a parsed report must re-encode to its bytes.
			if r, _, _ := parseStatus(s.marshal()); r != s {
				t.Fatalf("re-encoding %x changed it", b)
			}
		}
	})
}

// TestCancelSlowKillRecord: a child killed for its ctx is reported as such
// even when the record of the kill comes after the child has died and been
// reaped (the AfterFunc goroutine preempted between Kill and its store;
// under load that made TestCancel fail now and then). The hook holds that
// window open until the child is gone from /proc, and the test checks that
// it ran, once, after a kill that was sent.
func TestCancelSlowKillRecord(t *testing.T) {
	var (
		pid   int // set before cancel, which starts the hook
		calls atomic.Int32
		sent  atomic.Bool
	)
	slow := &hooks{afterCtxKill: func(s bool) {
		calls.Add(1)
		sent.Store(s)
		// reap collects the child before it waits for this record.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); errors.Is(err, os.ErrNotExist) {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("child %d not reaped 10 s after its kill", pid)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}}
	ctx, cancel := context.WithCancel(t.Context())
	p, err := start(ctx, isleep.e, []any{wireArg[time.Duration]{V: time.Hour}}, nil, slow)
	if err != nil {
		t.Fatal(err)
	}
	pid = p.Pid
	cancel()
	if err := p.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want it to wrap context.Canceled", err)
	}
	if n := calls.Load(); n != 1 || !sent.Load() {
		t.Fatalf("kill hook ran %d times (sent %v), want once after a sent kill", n, sent.Load())
	}
}
