//go:build linux

package shm

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/handoff"
	"github.com/ipckit/ipckit/internal/helperproc"
)

func init() {
	// narrowadd NAME I N READY: after the start line (the Int64 READY
	// counting 3), add 1 to element I of the Array[uint16] NAME, N times.
	helperproc.Register("narrowadd", func(args []string) error {
		i, _ := strconv.Atoi(args[1])
		n, _ := strconv.Atoi(args[2])
		a, err := OpenArray[uint16](args[0])
		if err != nil {
			return err
		}
		defer a.Close()
		r, err := OpenInt64(args[3])
		if err != nil {
			return err
		}
		defer r.Close()
		if err := startLine(r, 3); err != nil {
			return err
		}
		for k := range n {
			a.Add(i, 1)
			if k%64 == 0 {
				runtime.Gosched()
			}
		}
		return nil
	})
}

// TestNarrowValues: the narrow values wrap around at their width, and
// And, Or, Swap, CompareAndSwap change only their own bytes of the word.
func TestNarrowValues(t *testing.T) {
	seg, _ := NewHeap(8)
	for i := range seg.Bytes() {
		seg.Bytes()[i] = 0xAA
	}
	i8, _ := Int8At(seg, 1)
	u8, _ := Uint8At(seg, 2)
	i16, _ := Int16At(seg, 4)
	b, _ := BoolAt(seg, 0)
	i8.Store(127)
	if i8.Add(1) != -128 || i8.Load() != -128 {
		t.Fatalf("Int8 127+1 = %d, want -128", i8.Load())
	}
	u8.Store(255)
	if u8.Add(1) != 0 || u8.Swap(7) != 0 || !u8.CompareAndSwap(7, 9) || u8.CompareAndSwap(7, 1) || u8.Load() != 9 {
		t.Fatalf("Uint8 operations: %d", u8.Load())
	}
	if u8.And(0b1100) != 9 || u8.Or(0b0011) != 8 || u8.Load() != 0b1011 {
		t.Fatalf("Uint8 And, Or: %b", u8.Load())
	}
	i16.Store(-2)
	if i16.Add(-32767) != 32767 || i16.Load() != 32767 {
		t.Fatalf("Int16 -2-32767 = %d, want 32767 (wrapped)", i16.Load())
	}
	if !b.Load() { // 0xAA: any nonzero byte is true
		t.Fatal("Bool of byte 0xAA is false")
	}
	b.Store(false)
	if b.Load() || b.Swap(true) || !b.Load() || b.CompareAndSwap(false, false) || !b.CompareAndSwap(true, false) || b.Load() {
		t.Fatal("Bool operations")
	}
	want := []byte{0, 0x80, 0x0b, 0xAA, 0xff, 0x7f, 0xAA, 0xAA}
	if got := seg.Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("bytes % x, want % x: a narrow update changed a neighbour", got, want)
	}
	u32, _ := Uint32At(seg, 4)
	if u32.Load() != 0xAAAA7fff || u32.Add(1) != 0xAAAA8000 {
		t.Fatalf("Uint32 %#x", u32.Load())
	}
	f32, _ := Float32At(seg, 0)
	f32.Store(1.5)
	if f32.Add(2.25) != 3.75 || f32.Swap(1) != 3.75 || !f32.CompareAndSwap(1, 2) || f32.CompareAndSwap(1, 3) || f32.Load() != 2 {
		t.Fatal("Float32 operations")
	}
}

// TestNarrowNeighbours: goroutines adding to neighbouring bytes and
// half-words of the same words, all at once, never lose an update. On the
// heap, under the race detector.
func TestNarrowNeighbours(t *testing.T) {
	const byteRounds, halfRounds = 250, 30000 // no wrap
	seg, _ := NewHeap(24)
	bytes8, err := ArrayAt[uint8](seg, 0, 8)
	if err != nil {
		t.Fatal(err)
	}
	halves, err := ArrayAt[uint16](seg, 8, 8)
	if err != nil {
		t.Fatal(err)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			<-start
			for range byteRounds {
				bytes8.Add(i, 1)
				runtime.Gosched()
			}
		})
		wg.Go(func() {
			<-start
			for k := range halfRounds {
				halves.Add(i, 1)
				if k%64 == 0 {
					runtime.Gosched()
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for i := range 8 {
		if got := bytes8.Load(i); got != byteRounds {
			t.Errorf("byte %d = %d, want %d: updates were lost to a neighbour's", i, got, byteRounds)
		}
		if got := halves.Load(i); got != halfRounds {
			t.Errorf("half-word %d = %d, want %d: updates were lost to a neighbour's", i, got, halfRounds)
		}
	}
}

// TestNarrowNeighboursAcrossProcesses: two child processes and this one
// add to the four half-words of two words at once, from a start line;
// none loses an update.
func TestNarrowNeighboursAcrossProcesses(t *testing.T) {
	const n = 50000
	name, ready := helperproc.Name(t), helperproc.Name(t)
	a, err := CreateArray[uint16](name, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(name)
	defer a.Close()
	r, err := CreateInt64(ready, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(ready)
	defer r.Close()
	var cmds []*exec.Cmd
	for _, i := range []string{"1", "2"} {
		cmd := helperproc.Command(t, "narrowadd", name, i, strconv.Itoa(n), ready)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	err = startLine(r, 3)
	for k := range n {
		if err != nil {
			break
		}
		a.Add(0, 1)
		a.Add(3, 1)
		if k%64 == 0 {
			runtime.Gosched()
		}
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Snapshot(); got[0] != n || got[1] != n || got[2] != n || got[3] != n {
		t.Fatalf("elements %v, want %d each: updates were lost to a neighbour's", got, n)
	}
}

// startLine counts this process in at ready and waits until procs are.
func startLine(ready *Int64, procs int) error {
	ready.Add(1)
	for deadline := time.Now().Add(time.Minute); ready.Load() < int64(procs); time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d processes at the start line after a minute", ready.Load(), procs)
		}
	}
	return nil
}

func TestFloat32AddConcurrent(t *testing.T) {
	seg, _ := NewHeap(4)
	f, _ := Float32At(seg, 0)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			<-start
			for k := range 20000 {
				f.Add(0.5)
				if k%64 == 0 {
					runtime.Gosched()
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if f.Load() != 40000 {
		t.Fatalf("sum %v, want 40000: additions were lost", f.Load())
	}
}

// TestArrayBulk: CopyTo, CopyFrom and Snapshot copy what fits from at,
// and an at past the end panics.
func TestArrayBulk(t *testing.T) {
	a, err := NewArray[int8](5)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if n := a.CopyFrom([]int8{1, 2, 3}, 1); n != 3 {
		t.Fatalf("CopyFrom = %d, want 3", n)
	}
	if n := a.CopyFrom([]int8{-7, -8, -9}, 4); n != 1 {
		t.Fatalf("CopyFrom at the last element = %d, want 1", n)
	}
	if got := a.Snapshot(); !bytes.Equal(i8bytes(got), i8bytes([]int8{0, 1, 2, 3, -7})) {
		t.Fatalf("Snapshot %v", got)
	}
	dst := make([]int8, 10)
	if n := a.CopyTo(dst, 2); n != 3 || dst[0] != 2 || dst[2] != -7 {
		t.Fatalf("CopyTo = %d, %v", n, dst)
	}
	if n := a.CopyTo(dst, 5); n != 0 {
		t.Fatalf("CopyTo at Len = %d, want 0", n)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("CopyTo past the end did not panic")
		}
	}()
	a.CopyTo(dst, 6)
}

func i8bytes(s []int8) []byte {
	b := make([]byte, len(s))
	for i, v := range s {
		b[i] = byte(v)
	}
	return b
}

// TestArraySnapshotPerElement: a Snapshot taken while another goroutine
// stores whole rows never tears an element (each is one atomic load).
func TestArraySnapshotPerElement(t *testing.T) {
	seg, _ := NewHeap(64)
	a, _ := ArrayAt[float32](seg, 0, 16)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for k := 0; ; k++ {
			select {
			case <-done:
				return
			default:
			}
			for i := range 16 {
				a.Store(i, float32(k%2)*math.MaxFloat32)
			}
		}
	})
	for range 1000 {
		for _, v := range a.Snapshot() {
			if v != 0 && v != math.MaxFloat32 {
				t.Fatalf("torn element %v", v)
			}
		}
	}
	close(done)
	wg.Wait()
}

// TestNarrowKindsAndHandles: each new type opens only as itself, and its
// handle decodes to the same memory.
func TestNarrowKindsAndHandles(t *testing.T) {
	name := helperproc.Name(t)
	v, err := CreateInt16(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(name)
	defer v.Close()
	if _, err := OpenUint16(name); !errors.Is(err, ErrKind) {
		t.Fatalf("OpenUint16 of an int16 = %v, want ErrKind", err)
	}
	arrName := helperproc.Name(t)
	ar, err := CreateArray[int16](arrName, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(arrName)
	defer ar.Close()
	if _, err := OpenArray[uint16](arrName); !errors.Is(err, ErrKind) {
		t.Fatalf("OpenArray[uint16] of an int16 array = %v, want ErrKind", err)
	}
	type narrowArg struct {
		I8  *Int8
		B   *Bool
		F   *Float32
		U32 *Uint32
		I16 *Int16
		A   *Array[uint8]
	}
	i8, _ := NewInt8()
	defer i8.Close()
	b, _ := NewBool()
	defer b.Close()
	f, _ := NewFloat32()
	defer f.Close()
	u32, _ := NewUint32()
	defer u32.Close()
	arr, _ := NewArray[uint8](3)
	defer arr.Close()
	a := narrowArg{I8: i8, B: b, F: f, U32: u32, I16: v, A: arr}
	var buf bytes.Buffer
	files, ids, release := handoff.Collect(a)
	err = gob.NewEncoder(&buf).Encode(a)
	release()
	if err != nil {
		t.Fatal(err)
	}
	handoff.SetInherited(ids, files)
	defer handoff.SetInherited(nil, nil)
	var got narrowArg
	if err := gob.NewDecoder(&buf).Decode(&got); err != nil {
		t.Fatal(err)
	}
	for _, c := range []interface{ Close() error }{got.I8, got.B, got.F, got.U32, got.I16, got.A} {
		defer c.Close()
	}
	got.I8.Add(-3)
	got.B.Store(true)
	got.F.Store(0.5)
	got.U32.Add(9)
	got.I16.Add(-300)
	got.A.Add(2, 200)
	if i8.Load() != -3 || !b.Load() || f.Load() != 0.5 || u32.Load() != 9 || v.Load() != -300 || arr.Load(2) != 200 {
		t.Fatal("decoded values are not attached to the same memory")
	}
	var wrong Uint8
	if err := gob.NewDecoder(bytes.NewReader(mustEncode(t, i8))).Decode(&wrong); !errors.Is(err, ErrKind) {
		t.Fatalf("an Int8 handle decoded as a Uint8 = %v, want ErrKind", err)
	}
}

func mustEncode(t *testing.T, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	_, _, release := handoff.Collect(v)
	defer release()
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestNarrowAtHeapEnd places narrow values and arrays so that they end a
// heap segment at every alignment and updates them from two goroutines:
// the word a narrow update reads and writes back reaches up to 3 bytes
// past the segment, which must still be inside the Go object backing it
// (heapBytes pads it). Run under checkptr (go test -race
// -gcflags=all=-d=checkptr), a word outside the object is a fatal error;
// under -race, a neighbour's lost update shows as a wrong count.
func TestNarrowAtHeapEnd(t *testing.T) {
	const rounds = 500
	for size := 1; size <= 12; size++ {
		seg, err := NewHeap(size)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Uint8At(seg, size-1)
		a, _ := ArrayAt[int8](seg, 0, size)
		var i16 *Int16
		var last *Array[uint16]
		if size%2 == 0 {
			i16, _ = Int16At(seg, size-2)
			last, _ = ArrayAt[uint16](seg, 0, size/2)
		}
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for range rounds {
					b.Add(1)
					a.Add(0, 1)
					if i16 != nil {
						i16.Add(1 << 8) // the high byte: b's
						last.CompareAndSwap(0, 0, 0)
					}
				}
			})
		}
		wg.Wait()
		per := 2 * rounds // updates of each byte by each kind of call
		wantLast, wantFirst := per, per
		if size == 1 {
			wantLast, wantFirst = 2*per, 2*per // b and a[0] are one byte
		}
		if size%2 == 0 {
			wantLast += per
		}
		if got := b.Load(); got != uint8(wantLast) || uint8(a.Load(0)) != uint8(wantFirst) {
			t.Errorf("%d-byte heap segment: last byte %d, want %d; first %d, want %d", size, got, uint8(wantLast), uint8(a.Load(0)), uint8(wantFirst))
		}
		seg.Close()
	}
}
