package main

import (
	"context"
	"time"

	"github.com/ipckit/ipckit/ipcqueue"
	"github.com/ipckit/ipckit/spawn"
)

// rttSamples is how many round trips one latency round times.
func rttSamples(cfg *config) int {
	if cfg.quick {
		return 20_000
	}
	return 100_000
}

// pingPong times round trips of a 64-byte message through send and recv,
// after a warm-up, and returns percentile p of them in microseconds.
func pingPong(cfg *config, p float64, send, recv func([]byte) error) (float64, error) {
	var h histogram
	msg := make([]byte, msgSize)
	n := rttSamples(cfg)
	for i := -n / 10; i < n; i++ {
		start := time.Now()
		if err := send(msg); err != nil {
			return 0, err
		}
		if err := recv(msg); err != nil {
			return 0, err
		}
		if i >= 0 {
			h.record(time.Since(start))
		}
	}
	keepHist(&h)
	return float64(h.percentile(p)) / 1e3, nil
}

// stop is the message that ends an echo child.
var stop = []byte{0}

// queueRTT measures round trips to an echo child over two queues; spin is
// both sides' spin setting (negative: pure futex waits).
func queueRTT(cfg *config, p float64, spin time.Duration) (float64, error) {
	ping, err := ipcqueue.New(64<<10, nil)
	if err != nil {
		return 0, err
	}
	defer ping.Close()
	ping.SetSpin(spin)
	back, err := ipcqueue.New(64<<10, nil)
	if err != nil {
		return 0, err
	}
	defer back.Close()
	back.SetSpin(spin)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	child, err := spawn.Start(ctx, echo, echoArg{In: ping, Out: back, Spin: spin}, nil)
	if err != nil {
		return 0, err
	}
	v, err := pingPong(cfg, p,
		func(m []byte) error { return ping.Put(ctx, m) },
		func(m []byte) error { _, err := back.GetInto(ctx, m); return err })
	if perr := ping.Put(ctx, stop); err == nil {
		err = perr
	}
	if werr := child.Wait(); err == nil {
		err = werr
	}
	return v, err
}

// chanRTT is the spinning figures' peer: two goroutines of one process and
// an unbuffered channel each way.
func chanRTT(cfg *config, p float64) (float64, error) {
	ping, back := make(chan []byte), make(chan []byte)
	go func() {
		for m := range ping {
			back <- m
		}
	}()
	defer close(ping)
	return pingPong(cfg, p,
		func(m []byte) error { ping <- m; return nil },
		func([]byte) error { <-back; return nil })
}

// socketRTT is the blocking figures' peer: an echo child on a Unix
// SOCK_SEQPACKET socket pair.
func socketRTT(cfg *config, p float64) (float64, error) {
	a, b, err := socketPair()
	if err != nil {
		return 0, err
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	child, err := spawn.Start(ctx, echo, echoArg{}, &spawn.Options{Stdin: b})
	b.Close()
	if err != nil {
		return 0, err
	}
	v, err := pingPong(cfg, p,
		func(m []byte) error { _, err := a.Write(m); return err },
		func(m []byte) error { _, err := a.Read(m); return err })
	if _, werr := a.Write(stop); err == nil {
		err = werr
	}
	if werr := child.Wait(); err == nil {
		err = werr
	}
	return v, err
}

// rttMetric is percentile p of the queue's round trip with the given spin,
// beside peer's.
func rttMetric(name string, p float64, spin time.Duration, peer func(*config, float64) (float64, error)) metric {
	peerName := "chan_unbuffered"
	if spin < 0 {
		peerName = "uds_seqpacket"
	}
	peers := []side{{peerName, func(cfg *config) (float64, error) { return peer(cfg, p) }}}
	if spin >= 0 { // the floor: two processes bouncing one word
		peers = append(peers, side{"raw_pingpong", func(cfg *config) (float64, error) { return rawPingPongRTT(cfg, p) }})
	}
	return metric{
		name: name, unit: "us",
		ours:  side{"ipcqueue", func(cfg *config) (float64, error) { return queueRTT(cfg, p, spin) }},
		peers: peers,
	}
}
