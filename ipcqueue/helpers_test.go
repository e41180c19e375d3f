//go:build linux

package ipcqueue

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/internal/liveness"
	"github.com/ipckit/ipckit/internal/robust"
)

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

func openArg(name, spin string) (*Queue, error) {
	q, err := Open(name)
	if err != nil {
		return nil, err
	}
	return spinning(q, time.Duration(atoi(spin))), nil
}

// deadToken returns the liveness token of a process that has exited: a
// lock word naming a holder that died.
func deadToken(t testing.TB) uint64 {
	t.Helper()
	out, err := command(t, "token").Output()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("token helper said %q: %v", out, err)
	}
	if s := liveness.Check(liveness.Token(tok)); s != liveness.Dead {
		t.Fatalf("the token of an exited process is %v", s)
	}
	return tok
}

// killSelf is the fault hook of the crash tests: SIGKILL, for real.
func killSelf() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

func registerHelpers() {
	// produce NAME ID COUNT SPIN: put COUNT test messages.
	helperproc.Register("produce", func(a []string) error {
		q, err := openArg(a[0], a[3])
		if err != nil {
			return err
		}
		defer q.Close()
		id, n := atoi(a[1]), atoi(a[2])
		buf := make([]byte, 128)
		for s := range n {
			if err := q.Put(context.Background(), makeMsg(buf, id, uint64(s))); err != nil {
				return err
			}
		}
		return nil
	})
	// consume NAME PRODUCERS PER SPIN: get until EOF, check order, write
	// the bitmaps of what it saw to stdout.
	helperproc.Register("consume", func(a []string) error {
		q, err := openArg(a[0], a[3])
		if err != nil {
			return err
		}
		defer q.Close()
		c := newChecker(atoi(a[1]), atoi(a[2]))
		buf := make([]byte, 128)
		for {
			n, err := q.GetInto(context.Background(), buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			if err := c.add(buf[:n]); err != nil {
				return err
			}
		}
		w := bufio.NewWriter(os.Stdout)
		for _, s := range c.seen {
			binary.Write(w, binary.LittleEndian, s)
		}
		return w.Flush()
	})
	// crashput NAME: put one message, then die inside the second Put,
	// after its payload is written and before its commit.
	helperproc.Register("crashput", func(a []string) error {
		q, err := Open(a[0])
		if err != nil {
			return err
		}
		if err := q.Put(context.Background(), []byte("before")); err != nil {
			return err
		}
		q.faults.putCopied = killSelf
		q.Put(context.Background(), []byte("torn torn torn"))
		return errors.New("survived SIGKILL")
	})
	// crashget NAME: take the consumer lock and die inside Get, after
	// copying the message and before taking it.
	helperproc.Register("crashget", func(a []string) error {
		q, err := Open(a[0])
		if err != nil {
			return err
		}
		q.faults.getCopied = killSelf
		q.Get(context.Background())
		return errors.New("survived SIGKILL")
	})
	// sink NAME SPIN: GetInto until EOF (throughput benchmarks): say
	// "ready" once the first message, the hand-shake, is in, and at EOF
	// say how many came after it (gotLine).
	helperproc.Register("sink", func(a []string) error {
		q, err := openArg(a[0], a[1])
		if err != nil {
			return err
		}
		defer q.Close()
		// SINKPROF=file profiles the consumer side of the throughput
		// benchmark (the benchmark's -cpuprofile sees only the producer).
		if f := os.Getenv("SINKPROF"); f != "" {
			pf, _ := os.Create(f)
			pprof.StartCPUProfile(pf)
			defer pprof.StopCPUProfile()
		}
		buf := make([]byte, q.MaxMsg())
		if _, err := q.GetInto(context.Background(), buf); err != nil {
			return fmt.Errorf("hand-shake: %w", err)
		}
		fmt.Println("ready")
		for n := 0; ; n++ {
			if _, err := q.GetInto(context.Background(), buf); err != nil {
				if err == io.EOF {
					fmt.Println(gotLine(n))
					return nil
				}
				return err
			}
		}
	})
	// echo IN OUT SPIN: Get from IN, Put to OUT, until EOF (ping-pong).
	helperproc.Register("echo", func(a []string) error {
		in, err := openArg(a[0], a[2])
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := openArg(a[1], a[2])
		if err != nil {
			return err
		}
		defer out.Close()
		if err := echoAll(in, out); err != nil {
			return err
		}
		// For TestNoLostWakeups: this process's sleeps that no wake ended.
		fmt.Printf("unwoken %d\n", robust.Unwoken())
		return nil
	})
	// token: print this process's liveness token and exit (deadToken).
	helperproc.Register("token", func(a []string) error {
		tok, err := liveness.Self()
		if err != nil {
			return err
		}
		fmt.Println(uint64(tok))
		return nil
	})
	// pipesink: read 64-byte messages from stdin until EOF, saying
	// "ready" and how many came after the first as sink does.
	helperproc.Register("pipesink", func(a []string) error {
		buf := make([]byte, 64)
		if _, err := io.ReadFull(os.Stdin, buf); err != nil {
			return fmt.Errorf("hand-shake: %w", err)
		}
		fmt.Println("ready")
		for n := 0; ; n++ {
			if _, err := io.ReadFull(os.Stdin, buf); err != nil {
				if err == io.EOF {
					fmt.Println(gotLine(n))
					return nil
				}
				return err
			}
		}
	})
	// seqecho: echo SOCK_SEQPACKET messages on fd 3 until EOF.
	helperproc.Register("seqecho", func(a []string) error {
		buf := make([]byte, 64)
		for {
			n, err := syscall.Read(3, buf)
			if err != nil {
				return err
			}
			if n == 0 {
				return nil
			}
			if _, err := syscall.Write(3, buf[:n]); err != nil {
				return fmt.Errorf("write: %w", err)
			}
		}
	})
}

func init() {
	// typedput HEXHANDLE: decode a gob handle to a Typed[point] and a
	// Typed[record], put a value on each.
	helperproc.Register("typedput", func(a []string) error {
		b, err := hex.DecodeString(a[0])
		if err != nil {
			return err
		}
		var h struct {
			P *Typed[point]
			R *Typed[record]
		}
		if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&h); err != nil {
			return err
		}
		defer h.P.Close()
		defer h.R.Close()
		if err := h.P.Put(context.Background(), point{X: 1, Y: -2, Tag: [4]byte{'a'}}); err != nil {
			return err
		}
		return h.R.Put(context.Background(), record{Name: "child", Vals: []int{1, 2, 3}})
	})
}

func init() {
	// waitget NAME SPIN: say "ready", then Get; on io.EOF say "eof" (the
	// moment the waiter woke, measured by the parent: under -race the
	// process's exit takes a second longer, the race runtime's
	// atexit_sleep_ms), then "unwoken N" (its sleeps that ran into their
	// slow check: robust.Unwoken), and exit 0.
	helperproc.Register("waitget", func(a []string) error {
		q, err := openArg(a[0], a[1])
		if err != nil {
			return err
		}
		defer q.Close()
		fmt.Println("ready")
		msg, err := q.Get(context.Background())
		if err == io.EOF {
			fmt.Printf("eof\nunwoken %d\n", robust.Unwoken())
			return nil
		}
		return fmt.Errorf("Get = %q, %v", msg, err)
	})
	// waitput NAME SPIN: fill the queue, say "ready", then Put; on
	// ErrShutdown say "shutdown", then "unwoken N" as waitget does, and
	// exit 0.
	helperproc.Register("waitput", func(a []string) error {
		q, err := openArg(a[0], a[1])
		if err != nil {
			return err
		}
		defer q.Close()
		for {
			ok, err := q.TryPut(make([]byte, 40))
			if err != nil {
				return err
			}
			if !ok {
				break
			}
		}
		fmt.Println("ready")
		err = q.Put(context.Background(), []byte("x"))
		if errors.Is(err, ErrShutdown) {
			fmt.Printf("shutdown\nunwoken %d\n", robust.Unwoken())
			return nil
		}
		return fmt.Errorf("Put = %v", err)
	})
}

// gotLine is what a benchmark's sink says once it has taken n messages
// after the hand-shake, and the stream has ended.
func gotLine(n int) string { return fmt.Sprintf("got %d", n) }

// echoAll puts back on out every message (up to 64 bytes) it gets from in,
// until in is closed and drained.
func echoAll(in, out *Queue) error {
	buf := make([]byte, 64)
	for {
		n, err := in.GetInto(context.Background(), buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := out.Put(context.Background(), buf[:n]); err != nil {
			return err
		}
	}
}
