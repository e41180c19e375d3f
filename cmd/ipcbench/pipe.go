package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ipckit/ipckit/ipcpipe"
	"github.com/ipckit/ipckit/spawn"
)

// The pipe figures: ipcpipe's Conn against an os.Pipe pair between the
// same two processes (blocking reads and writes), the peer Python's
// multiprocessing.Pipe is built on.

// pipeArg gives a child its end of an ipcpipe: echo every message (Echo),
// or send N messages of msgSize bytes.
type pipeArg struct {
	C    *ipcpipe.Conn
	Echo bool
	N    int
	Spin time.Duration
}

var pipeChild = spawn.Register("ipcbench.pipe", func(ctx context.Context, a pipeArg) error {
	defer a.C.Close()
	a.C.SetSpin(a.Spin)
	buf := make([]byte, msgSize)
	if !a.Echo {
		for i := range a.N {
			buf[0] = byte(i)
			if err := a.C.Send(ctx, buf); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		n, err := a.C.RecvInto(ctx, buf)
		if err != nil || n == 1 {
			return err
		}
		if err := a.C.Send(ctx, buf[:n]); err != nil {
			return err
		}
	}
})

// osPipeEcho echoes msgSize-byte messages from stdin to stdout (two
// os.Pipe pairs) until a message of length 1... which a pipe cannot tell
// apart: it ends at EOF instead.
var osPipeEcho = spawn.Register("ipcbench.ospipe_echo", func(ctx context.Context, _ struct{}) error {
	buf := make([]byte, msgSize)
	for {
		if _, err := io.ReadFull(os.Stdin, buf); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if _, err := os.Stdout.Write(buf); err != nil {
			return err
		}
	}
})

// ipcpipeRTT is percentile p of round trips to an echo child over a pipe.
func ipcpipeRTT(cfg *config, p float64, spin time.Duration) (float64, error) {
	a, b, err := ipcpipe.Pipe(true)
	if err != nil {
		return 0, err
	}
	defer a.Close()
	a.SetSpin(spin)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	child, err := spawn.Start(ctx, pipeChild, pipeArg{C: b, Echo: true, Spin: spin}, nil)
	b.Close()
	if err != nil {
		return 0, err
	}
	v, err := pingPong(cfg, p,
		func(m []byte) error { return a.Send(ctx, m) },
		func(m []byte) error { _, err := a.RecvInto(ctx, m); return err })
	if serr := a.Send(ctx, stop); err == nil {
		err = serr
	}
	if werr := child.Wait(); err == nil {
		err = werr
	}
	return v, err
}

// osPipeRTT is percentile p of round trips to an echo child over two
// os.Pipe pairs (its stdin and stdout).
func osPipeRTT(cfg *config, p float64) (float64, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer inW.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		return 0, err
	}
	defer outR.Close()
	child, err := spawn.Start(context.Background(), osPipeEcho, struct{}{}, &spawn.Options{Stdin: inR, Stdout: outW})
	inR.Close()
	outW.Close()
	if err != nil {
		return 0, err
	}
	v, err := pingPong(cfg, p,
		func(m []byte) error { _, err := inW.Write(m); return err },
		func(m []byte) error { _, err := io.ReadFull(outR, m); return err })
	inW.Close() // EOF ends the child
	if werr := child.Wait(); err == nil {
		err = werr
	}
	return v, err
}

// ipcpipeRate is messages per second from a child through a pipe.
func ipcpipeRate(cfg *config) (float64, error) {
	n := streamCount(cfg, msgSize)
	a, b, err := ipcpipe.Pipe(false)
	if err != nil {
		return 0, err
	}
	defer a.Close()
	ctx := context.Background()
	d, err := receive(n, msgSize, func(ctx context.Context) (*spawn.Process, error) {
		p, err := spawn.Start(ctx, pipeChild, pipeArg{C: b, N: n}, nil)
		b.Close()
		return p, err
	}, func(_ *spawn.Process, buf []byte) error {
		m, err := a.RecvInto(ctx, buf)
		if err == nil && m != len(buf) {
			err = fmt.Errorf("got %d bytes, want %d", m, len(buf))
		}
		return err
	})
	return rate(n-1, d), err
}

func pipeMetrics() []metric {
	msgs := func(m float64, err error) (float64, error) { return m / 1e6, err }
	return []metric{
		{
			name: "pipe_rtt_p50", unit: "us",
			ours: side{"ipcpipe", func(cfg *config) (float64, error) { return ipcpipeRTT(cfg, 0.50, 0) }},
			peers: []side{
				{"os_pipe", func(cfg *config) (float64, error) { return osPipeRTT(cfg, 0.50) }},
				{"ipcpipe_nospin", func(cfg *config) (float64, error) { return ipcpipeRTT(cfg, 0.50, -1) }},
			},
		},
		{
			name: "pipe_64B_msgs_per_s", unit: "M msgs/s", higher: true,
			ours: side{"ipcpipe", func(cfg *config) (float64, error) { return msgs(ipcpipeRate(cfg)) }},
			peers: []side{{"os_pipe", func(cfg *config) (float64, error) {
				r, w, err := os.Pipe()
				if err != nil {
					return 0, err
				}
				defer r.Close()
				defer w.Close()
				return msgs(fileRate(cfg, r, &spawn.Options{Stdout: w}, false))
			}}},
		},
	}
}
