//go:build linux

package ipcmap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// selfValue returns a value for key that proves itself whole: the key, a
// length that varies with n, and a CRC of the rest at its end.
func selfValue(key string, n uint64) []byte {
	b := fmt.Appendf(nil, "%s|%d|", key, n)
	b = append(b, bytes.Repeat([]byte{byte(n)}, int(n%97))...)
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// checkValue returns an error unless v is a whole selfValue of key.
func checkValue(key string, v []byte) error {
	if len(v) < 4 || crc32.ChecksumIEEE(v[:len(v)-4]) != binary.LittleEndian.Uint32(v[len(v)-4:]) ||
		!bytes.HasPrefix(v, []byte(key+"|")) {
		return fmt.Errorf("torn or foreign value for %q: %q", key, v)
	}
	return nil
}

// TestConcurrentHeap runs writers and readers on one heap map, where the
// race detector sees every access: readers never see a torn value, and
// the map ends consistent.
func TestConcurrentHeap(t *testing.T) {
	// Room for the 8 entries and little more, so that freed bytes are
	// reused at once; readers yield between their loads of seq, so that
	// writers run inside their reads.
	m := heapMap(t, &Options{Entries: 32, Bytes: 10 * 144})
	var yields atomic.Uint64
	m.w.readFault = func() {
		if yields.Add(1)%3 == 0 {
			runtime.Gosched()
		}
	}
	ctx := t.Context()
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	var seq atomic.Uint64
	var wg sync.WaitGroup
	var stop atomic.Bool
	errs := make(chan error, 16)
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range 3000 {
				k := keys[r.IntN(len(keys))]
				v := selfValue(k, seq.Add(1))
				var err error
				switch r.IntN(4) {
				case 0:
					err = m.Set(ctx, []byte(k), v)
				case 1:
					_, err = m.Delete(ctx, []byte(k))
				case 2:
					var cur []byte
					cur, _, err = m.Get([]byte(k))
					if err == nil {
						_, err = m.CompareAndSwap(ctx, []byte(k), cur, v)
					}
				case 3:
					var act []byte
					act, _, err = m.LoadOrStore(ctx, []byte(k), v)
					if err == nil && act != nil {
						err = checkValue(k, act)
					}
				}
				if err != nil && !errors.Is(err, ErrFull) { // a fragmented area may refuse a write
					errs <- err
					return
				}
			}
		})
	}
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			var buf []byte
			for i := 0; !stop.Load(); i++ {
				if i%50 == 0 {
					for k, v := range m.Range() {
						if err := checkValue(string(k), v); err != nil {
							errs <- fmt.Errorf("Range: %w", err)
							return
						}
					}
					continue
				}
				k := keys[i%len(keys)]
				var ok bool
				var err error
				buf, ok, err = m.AppendValue(buf[:0], []byte(k))
				if err == nil && ok {
					err = checkValue(k, buf)
				}
				if err != nil {
					errs <- fmt.Errorf("Get: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	stop.Store(true)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := contents(m)
	for k, v := range want {
		if err := checkValue(k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	checkState(t, m, want)
}
