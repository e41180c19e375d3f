//go:build linux

package ipctopic

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
)

// Test messages: the message's number (8 bytes), then filler that depends
// on it, 8 to 64 bytes in all, so that a torn or misplaced message shows.

func makeMsg(buf []byte, seq uint64) []byte {
	n := 8 + int(seq%57)
	binary.LittleEndian.PutUint64(buf, seq)
	for i := 8; i < n; i++ {
		buf[i] = byte(seq) ^ byte(i)
	}
	return buf[:n]
}

// parseMsg returns the number of a test message, or an error if it is torn.
func parseMsg(m []byte) (uint64, error) {
	if len(m) < 8 {
		return 0, fmt.Errorf("message of %d bytes", len(m))
	}
	seq := binary.LittleEndian.Uint64(m)
	if want := 8 + int(seq%57); len(m) != want {
		return seq, fmt.Errorf("message %d of %d bytes, want %d", seq, len(m), want)
	}
	for i := 8; i < len(m); i++ {
		if m[i] != byte(seq)^byte(i) {
			return seq, fmt.Errorf("message %d torn at byte %d", seq, i)
		}
	}
	return seq, nil
}

func heapTopic(t testing.TB, opts *Options) *Topic {
	t.Helper()
	tp, err := NewHeap(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })
	return tp
}

func namedTopic(t testing.TB, opts *Options) *Topic {
	t.Helper()
	name := helperproc.Name(t)
	tp, err := Create(name, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close(); Remove(name) })
	return tp
}

func subscribe(t testing.TB, tp *Topic) *Subscriber {
	t.Helper()
	s, err := tp.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// command is helperproc.Command without the race runtime's exit sleep.
func command(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := helperproc.Command(t, name, args...)
	helperproc.NoExitSleep(cmd)
	return cmd
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

// ctxSleep sleeps a millisecond, or returns the test context's error.
func ctxSleep(t testing.TB) error {
	select {
	case <-t.Context().Done():
		return t.Context().Err()
	case <-time.After(time.Millisecond):
		return nil
	}
}

// killSelf is the fault hook of the crash tests: SIGKILL, for real.
func killSelf() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// receiveAll receives from s until io.EOF, checking that each message is
// whole and numbered one after the previous; it returns the first number
// and how many it received. say, if not nil, is called after each message
// with how many so far.
func receiveAll(ctx context.Context, s *Subscriber, say func(n int)) (first uint64, n int, err error) {
	for {
		m, err := s.Recv(ctx)
		if err != nil {
			return first, n, err
		}
		seq, err := parseMsg(m)
		if err != nil {
			return first, n, err
		}
		if n == 0 {
			first = seq
		} else if seq != first+uint64(n) {
			return first, n, fmt.Errorf("message %d after %d", seq, first+uint64(n)-1)
		}
		n++
		if say != nil {
			say(n)
		}
	}
}

func registerHelpers() {
	// sub NAME [STOP]: open the topic, subscribe, say "joined", then
	// receive until EOF (receiveAll), and say "done FIRST N". With STOP,
	// say "got STOP" after STOP messages and stop reading (sleep until
	// killed): a subscriber that stalls, to be SIGKILLed.
	helperproc.Register("sub", func(a []string) error {
		tp, err := Open(a[0])
		if err != nil {
			return err
		}
		defer tp.Close()
		ctx := context.Background()
		s, err := tp.Subscribe(ctx)
		if err != nil {
			return err
		}
		fmt.Println("joined")
		stop := -1
		if len(a) > 1 {
			stop = atoi(a[1])
		}
		first, n, err := receiveAll(ctx, s, func(n int) {
			if n == stop {
				fmt.Printf("got %d\n", n)
				select {}
			}
		})
		if !errors.Is(err, io.EOF) {
			return err
		}
		fmt.Printf("done %d %d\n", first, n)
		return nil
	})
	// crashpub NAME STEP: publish message 0, then die by SIGKILL inside
	// the Publish of message 1, at STEP: "copied" (payload written, not
	// committed), "committed" (committed, tail not moved) or "asleep"
	// (committed once a subscriber announced that it sleeps). STEP
	// "repair": die inside the first Publish, once it repaired what a
	// dead publisher left.
	helperproc.Register("crashpub", func(a []string) error {
		tp, err := Open(a[0])
		if err != nil {
			return err
		}
		buf := make([]byte, 64)
		ctx := context.Background()
		if a[1] == "repair" {
			tp.faults.repaired = killSelf
		}
		if err := tp.Publish(ctx, makeMsg(buf, 0)); err != nil {
			return err
		}
		switch a[1] {
		case "copied":
			tp.faults.pubCopied = killSelf
		case "committed":
			tp.faults.pubCommitted = killSelf
		case "asleep": // commit once a subscriber sleeps, then die
			tp.faults.pubCopied = func() {
				for tp.dataFx.Load()&1 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			tp.faults.pubCommitted = killSelf
		default:
			return fmt.Errorf("step %q", a[1])
		}
		tp.Publish(ctx, makeMsg(buf, 1))
		return fmt.Errorf("Publish returned")
	})
}
