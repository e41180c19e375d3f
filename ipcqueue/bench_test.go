//go:build linux

package ipcqueue

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
)

// Benchmarks: each group runs ipcqueue and its peers in the same run, so
// compare the lines of one run (ratios), never against another day's.

func spinArg(d time.Duration) string { return strconv.Itoa(int(d)) }

// Cross-process benchmarks time only the stream itself: the peer process
// is started, attached and hand-shaken with (one message, or one round trip)
// before b.Loop starts the clock, and a stream's clock stops only once its
// sink says it has taken every message (drained), not when the last one is
// sent with a ring or pipe of them still on the way.

// startSink starts cmd, a sink helper (sink or pipesink), sends it the
// hand-shake message with send, and returns once the sink has it.
func startSink(b *testing.B, cmd *exec.Cmd, send func() error) *helperproc.Proc {
	b.Helper()
	w := helperproc.Start(b, cmd)
	if err := send(); err != nil {
		b.Fatal(err)
	}
	w.Expect(b, "ready")
	return w
}

// drained restarts the clock that b.Loop stopped, ends the stream with end,
// and stops the clock once sink w says it has taken all b.N messages.
func drained(b *testing.B, w *helperproc.Proc, end func() error) {
	b.Helper()
	b.StartTimer()
	if err := end(); err != nil {
		b.Fatal(err)
	}
	w.Expect(b, gotLine(b.N))
	b.StopTimer()
	if err := w.Cmd.Wait(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkThroughput: one producer process (this one) to one consumer
// process, 64-byte messages, one Put and one Get per message, until the
// consumer has them all. Peers: a buffered channel (cap 1024) of [64]byte
// between two goroutines, and a pipe to another process with one write per
// message, timed the same way.
func BenchmarkThroughput(b *testing.B) {
	for _, c := range []struct {
		name string
		size int
		spin time.Duration
	}{
		// 64 KiB: the channel's 1024 x 64 bytes; 256 KiB for comparison.
		{"ipcqueue/64KiB/spin", 64 << 10, 0}, {"ipcqueue/64KiB/nospin", 64 << 10, -1},
		{"ipcqueue/256KiB/spin", 256 << 10, 0}, {"ipcqueue/256KiB/nospin", 256 << 10, -1},
	} {
		b.Run(c.name, func(b *testing.B) {
			q := spinning(namedQueue(b, c.size, nil), c.spin)
			msg := make([]byte, 64)
			ctx := context.Background()
			sink := startSink(b, command(b, "sink", q.Segment().Name(), spinArg(c.spin)), func() error { return q.Put(ctx, msg) })
			waits := q.waits.Load()
			b.ReportAllocs()
			for b.Loop() {
				if err := q.Put(ctx, msg); err != nil {
					b.Fatal(err)
				}
			}
			drained(b, sink, q.Shutdown)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(q.waits.Load()-waits)/float64(b.N), "sleeps/msg")
		})
	}
	b.Run("chan", func(b *testing.B) {
		ch := make(chan [64]byte, 1024)
		ready, got := make(chan struct{}), make(chan int, 1)
		go func() {
			<-ch
			close(ready)
			n := 0
			for range ch {
				n++
			}
			got <- n
		}()
		var m [64]byte
		ch <- m
		<-ready
		b.ReportAllocs()
		for b.Loop() {
			ch <- m
		}
		b.StartTimer()
		close(ch)
		n := <-got
		b.StopTimer()
		if n != b.N {
			b.Fatalf("the receiver got %d of %d", n, b.N)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("pipe", func(b *testing.B) {
		r, w, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		cmd := command(b, "pipesink")
		cmd.Stdin = r
		msg := make([]byte, 64)
		sink := startSink(b, cmd, func() error {
			r.Close() // the child's now
			_, err := w.Write(msg)
			return err
		})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := w.Write(msg); err != nil {
				b.Fatal(err)
			}
		}
		drained(b, sink, w.Close)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// reportRTT reports percentiles of round-trip times.
func reportRTT(b *testing.B, rtt []time.Duration) {
	slices.Sort(rtt)
	if len(rtt) == 0 {
		return
	}
	b.ReportMetric(float64(rtt[len(rtt)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(rtt[len(rtt)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkPingPong: 64-byte round trip between two processes through two
// queues, with the default adaptive spin, with a fixed spin budget (the
// sweep that sizes DefaultSpin), and with spinning off (pure futex). Peers:
// an unbuffered channel round trip between two goroutines, and a
// SOCK_SEQPACKET socket pair between two processes. Each makes one round
// trip before b.Loop: the echo side is running and attached when the clock
// starts.
func BenchmarkPingPong(b *testing.B) {
	for _, c := range []struct {
		name string
		spin time.Duration
	}{
		{"ipcqueue/spin", 0}, {"ipcqueue/nospin", -1},
		{"ipcqueue/spin=1us", time.Microsecond}, {"ipcqueue/spin=5us", 5 * time.Microsecond},
		{"ipcqueue/spin=20us", 20 * time.Microsecond}, {"ipcqueue/spin=100us", 100 * time.Microsecond},
	} {
		b.Run(c.name, func(b *testing.B) {
			ping := spinning(namedQueue(b, 4096, nil), c.spin)
			pong := spinning(namedQueue(b, 4096, nil), c.spin)
			cmd := command(b, "echo", ping.Segment().Name(), pong.Segment().Name(), spinArg(c.spin))
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			if err := pingPong(ping, pong, 1, time.Minute); err != nil {
				b.Fatalf("hand-shake: %v", err)
			}
			msg := make([]byte, 64)
			buf := make([]byte, 64)
			ctx := context.Background()
			rtt := make([]time.Duration, 0, 1<<20)
			b.ReportAllocs()
			for b.Loop() {
				t0 := time.Now()
				if err := ping.Put(ctx, msg); err != nil {
					b.Fatal(err)
				}
				if _, err := pong.GetInto(ctx, buf); err != nil {
					b.Fatal(err)
				}
				if len(rtt) < cap(rtt) {
					rtt = append(rtt, time.Since(t0))
				}
			}
			b.StopTimer()
			ping.Shutdown()
			if err := cmd.Wait(); err != nil {
				b.Fatal(err)
			}
			reportRTT(b, rtt)
		})
	}
	b.Run("chan", func(b *testing.B) {
		ping, pong := make(chan [64]byte), make(chan [64]byte)
		go func() {
			for m := range ping {
				pong <- m
			}
			close(pong)
		}()
		var m [64]byte
		ping <- m
		m = <-pong
		rtt := make([]time.Duration, 0, 1<<20)
		for b.Loop() {
			t0 := time.Now()
			ping <- m
			m = <-pong
			if len(rtt) < cap(rtt) {
				rtt = append(rtt, time.Since(t0))
			}
		}
		b.StopTimer()
		close(ping)
		<-pong
		reportRTT(b, rtt)
	})
	b.Run("seqpacket", func(b *testing.B) {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		child := os.NewFile(uintptr(fds[1]), "seqpacket")
		cmd := command(b, "seqecho")
		cmd.ExtraFiles = []*os.File{child}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		child.Close()
		fd := fds[0]
		msg := make([]byte, 64)
		if err := seqRoundTrip(fd, msg); err != nil {
			b.Fatalf("hand-shake: %v", err)
		}
		rtt := make([]time.Duration, 0, 1<<20)
		for b.Loop() {
			t0 := time.Now()
			if err := seqRoundTrip(fd, msg); err != nil {
				b.Fatal(err)
			}
			if len(rtt) < cap(rtt) {
				rtt = append(rtt, time.Since(t0))
			}
		}
		b.StopTimer()
		syscall.Close(fd)
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
		reportRTT(b, rtt)
	})
}

// seqRoundTrip sends msg on the SOCK_SEQPACKET socket fd and reads the echo
// back into it.
func seqRoundTrip(fd int, msg []byte) error {
	if _, err := syscall.Write(fd, msg); err != nil {
		return err
	}
	_, err := syscall.Read(fd, msg)
	return err
}

// BenchmarkBulk: 64 KiB messages from this process to a consumer process,
// as MB/s until the consumer has them all, beside single-core memcpy of
// the same size.
func BenchmarkBulk(b *testing.B) {
	const size = 64 << 10
	b.Run("ipcqueue", func(b *testing.B) {
		q := namedQueue(b, 1<<20, nil)
		msg := make([]byte, size)
		ctx := context.Background()
		sink := startSink(b, command(b, "sink", q.Segment().Name(), "0"), func() error { return q.Put(ctx, msg) })
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			if err := q.Put(ctx, msg); err != nil {
				b.Fatal(err)
			}
		}
		drained(b, sink, q.Shutdown)
	})
	b.Run("memcpy", func(b *testing.B) {
		src, dst := make([]byte, size), make([]byte, size)
		b.SetBytes(size)
		for b.Loop() {
			copy(dst, src)
		}
	})
}

// BenchmarkInProcess: Put then GetInto on one goroutine (no peer): the
// cost of the operations themselves, and their allocations (0).
func BenchmarkInProcess(b *testing.B) {
	q := heapQueue(b, 64<<10, nil)
	msg, buf := make([]byte, 64), make([]byte, 64)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		q.Put(ctx, msg)
		q.GetInto(ctx, buf)
	}
}

// BenchmarkGoroutines: a 64-byte stream between two goroutines of one
// process, through one shared handle and through a handle each. The two
// should match: a handle's producer-side and consumer-side fields live on
// separate cache lines.
func BenchmarkGoroutines(b *testing.B) {
	for _, shared := range []bool{true, false} {
		name := "handle-each"
		if shared {
			name = "shared-handle"
		}
		b.Run(name, func(b *testing.B) {
			q := namedQueue(b, 64<<10, nil)
			producer := q
			if !shared {
				var err error
				if producer, err = Open(q.Segment().Name()); err != nil {
					b.Fatal(err)
				}
				defer producer.Close()
			}
			ctx := context.Background()
			errc := make(chan error, 1)
			n := b.N
			go func() {
				msg := make([]byte, 64)
				for range n {
					if err := producer.Put(ctx, msg); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			buf := make([]byte, 64)
			for range n {
				if _, err := q.GetInto(ctx, buf); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
