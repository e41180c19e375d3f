//go:build linux

package semaphore

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/ipckit/ipckit/shm"
)

// The fuzz targets attach each type to arbitrary bytes of a heap segment,
// at an arbitrary offset, and run one non-blocking operation: attaching
// may fail, the operation may fail, but nothing may panic, read out of
// range or hang.

// fuzzSegment returns a heap segment holding data.
func fuzzSegment(t *testing.T, data []byte) *shm.Segment {
	seg, err := shm.NewHeap(max(len(data), 8))
	if err != nil {
		t.Fatal(err)
	}
	copy(seg.Bytes(), data)
	return seg
}

// seeds adds valid images of each kind and a few corrupt ones.
func fuzzSeeds(f *testing.F, valid func(seg *shm.Segment) error) {
	seg, _ := shm.NewHeap(4096)
	if err := valid(seg); err != nil {
		f.Fatal(err)
	}
	img := append([]byte(nil), seg.Bytes()[:1024]...)
	f.Add(img, 0)
	f.Add(img, 8)
	f.Add(img[:40], 0)
	f.Add(img, -8)
	f.Add(img, 1<<62)
	bad := append([]byte(nil), img...)
	for i := 0; i+4 <= 64; i += 4 {
		binary.LittleEndian.PutUint32(bad[i:], 0xffffffff)
	}
	f.Add(bad, 0)
	f.Add([]byte{}, 0)
}

func FuzzMutexAt(f *testing.F) {
	fuzzSeeds(f, func(seg *shm.Segment) error {
		m, err := MutexAt(seg, 0)
		if err == nil {
			_, err = m.TryLock()
		}
		return err
	})
	f.Fuzz(func(t *testing.T, data []byte, off int) {
		m, err := MutexAt(fuzzSegment(t, data), off)
		if err != nil {
			return
		}
		ok, _ := m.TryLock()
		if ok {
			m.MarkConsistent()
		}
		m.Unlock()
		m.Close()
	})
}

func FuzzSemaphoreAt(f *testing.F) {
	fuzzSeeds(f, func(seg *shm.Segment) error {
		_, err := InitSemaphoreAt(seg, 0, 3, &SemaphoreOptions{Holders: 4, Bounded: true})
		return err
	})
	f.Fuzz(func(t *testing.T, data []byte, off int) {
		s, err := SemaphoreAt(fuzzSegment(t, data), off)
		if err != nil {
			return
		}
		if s.TryAcquire() {
			s.Release()
		}
		s.Value()
		s.Close()
	})
}

func FuzzBarrierAt(f *testing.F) {
	fuzzSeeds(f, func(seg *shm.Segment) error {
		_, err := InitBarrierAt(seg, 0, 3)
		return err
	})
	f.Fuzz(func(t *testing.T, data []byte, off int) {
		b, err := BarrierAt(fuzzSegment(t, data), off)
		if err != nil {
			return
		}
		b.Broken()
		// Wait with a context already done: must not arrive, must not block.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := b.Wait(ctx); err == nil {
			t.Fatal("Wait with a done context succeeded")
		}
		b.Close()
	})
}

func FuzzEventAt(f *testing.F) {
	fuzzSeeds(f, func(seg *shm.Segment) error {
		e, err := EventAt(seg, 0)
		if err == nil {
			e.Set()
		}
		return err
	})
	f.Fuzz(func(t *testing.T, data []byte, off int) {
		e, err := EventAt(fuzzSegment(t, data), off)
		if err != nil {
			return
		}
		was := e.IsSet()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := e.Wait(ctx); (err == nil) != was {
			t.Fatalf("Wait = %v on an event set=%v", err, was)
		}
		e.Set()
		if !e.IsSet() {
			t.Fatal("Set did not set")
		}
		e.Clear()
		e.Close()
	})
}

func FuzzFileRecord(f *testing.F) {
	fuzzSeeds(f, func(seg *shm.Segment) error {
		r, err := fileRecordAt(seg.Bytes())
		if err == nil {
			err = r.acquired()
		}
		return err
	})
	f.Fuzz(func(t *testing.T, data []byte, off int) {
		b := fuzzSegment(t, data).Bytes()
		if off < 0 || off > len(b) {
			off = 0
		}
		r, err := fileRecordAt(b[off:])
		if err != nil {
			return
		}
		r.shared()
		switch err := r.acquired(); err {
		case nil, ErrOwnerDead:
			r.markConsistent()
			r.releasing()
			if r.shared() != nil || r.acquired() != nil {
				t.Fatal("a repaired record is not consistent")
			}
		case ErrNotRecoverable:
		default:
			t.Fatal(err)
		}
	})
}

func FuzzConditionAt(f *testing.F) {
	fuzzSeeds(f, func(seg *shm.Segment) error {
		c, err := ConditionAt(seg, 0)
		if err == nil {
			c.Lock()
		}
		return err
	})
	f.Fuzz(func(t *testing.T, data []byte, off int) {
		c, err := ConditionAt(fuzzSegment(t, data), off)
		if err != nil {
			return
		}
		defer c.Close()
		c.Waiting()
		if ok, _ := c.Mutex().TryLock(); !ok {
			return
		}
		// Wait with a context already done: must not block.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		c.Wait(ctx)
		c.NotifyAll()
		c.Notify(1)
	})
}

func FuzzLockedAt(f *testing.F) {
	fuzzSeeds(f, func(seg *shm.Segment) error {
		_, err := InitLockedAt[int16](seg, 0, 5)
		return err
	})
	f.Fuzz(func(t *testing.T, data []byte, off int) {
		l, err := LockedAt[int16](fuzzSegment(t, data), off)
		if err != nil {
			return
		}
		defer l.Close()
		a := l.Array()
		a.Add(a.Len()-1, 1) // the last element lies inside the segment
		a.Snapshot()
	})
}
