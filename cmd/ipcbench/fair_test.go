package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestSig3: the table prints three significant digits, so a ratio of
// 0.7689 reads 0.769, not a 0.77 that would seem to meet a 0.77 target.
func TestSig3(t *testing.T) {
	for x, want := range map[float64]string{
		0.7689: "0.769", 1: "1.00", 9.996: "10.0", 19.64: "19.6", 110.4: "110",
		1034: "1030", 123456: "123000", 0.000123456: "0.000123", 0: "0",
	} {
		if got := sig3(x); got != want {
			t.Errorf("sig3(%v) = %q, want %q", x, got, want)
		}
	}
	var b bytes.Buffer
	printTable(&b, []row{{"m", "ns/op", 2.9, "p", 2.23, 2.23 / 2.9}})
	if !strings.Contains(b.String(), " 2.90 ") || !strings.Contains(b.String(), " 0.769x\n") {
		t.Errorf("the table prints\n%s\nwant 2.90 and 0.769x", b.String())
	}
}

// TestBulkTimedAlike: both sides of queue_64KiB_MB_per_s are timed over at
// least the target, and memcpy walks more memory than the queue's ring and
// messages (and at least 4 MiB), copying every block where it belongs.
func TestBulkTimedAlike(t *testing.T) {
	cfg := &config{quick: true, target: 50 * time.Millisecond}
	for name, f := range map[string]func(*config) (int, time.Duration, error){"queue": queueBulk, "memcpy": memcpyBulk} {
		n, d, err := f(cfg)
		if err != nil || n <= 0 || d < cfg.target {
			t.Errorf("%s: %d blocks timed over %v (%v), want at least %v", name, n, d, err, cfg.target)
		}
	}
	if memcpyRegion < bulkRing+2*bulkSize || memcpyRegion < 4<<20 {
		t.Errorf("memcpy walks %d bytes each way, less than the queue's %d or 4 MiB", memcpyRegion, bulkRing+2*bulkSize)
	}
	src, dst := make([]byte, 4*bulkSize), make([]byte, 4*bulkSize)
	for i := range src {
		src[i] = byte(i / bulkSize)
	}
	copyBlocks(dst, src, 2, 4) // blocks 2, 3, then 0 and 1 again
	if !bytes.Equal(dst, src) {
		t.Errorf("copyBlocks(from 2, 4 blocks) did not copy each block to its place")
	}
}

// TestPoolMapPeerChunks: the goroutine peer of pool_map_us_per_item sends
// its items in as many tasks as the pool sends chunks, and maps them right.
func TestPoolMapPeerChunks(t *testing.T) {
	g := newGoroutinePool()
	defer g.close()
	items := rangeInts(mapItems)
	out := g.mapInts(func(x int) int { return 2 * x }, items, mapChunk())
	for i, y := range out {
		if y != 2*i {
			t.Fatalf("item %d mapped to %d, want %d", i, y, 2*i)
		}
	}
	if want := (mapItems + mapChunk() - 1) / mapChunk(); g.chunks != want {
		t.Fatalf("the peer sent %d tasks for %d items, the pool %d chunks of %d", g.chunks, mapItems, want, mapChunk())
	}
}
