//go:build linux

package shm

import (
	"bytes"
	"encoding/gob"
	"errors"
	"math"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/ipckit/ipckit/internal/handoff"
	"github.com/ipckit/ipckit/internal/helperproc"
)

func TestValues(t *testing.T) {
	i32, err := NewInt32()
	if err != nil {
		t.Fatal(err)
	}
	defer i32.Close()
	if i32.Add(5) != 5 || i32.Swap(7) != 5 || !i32.CompareAndSwap(7, 9) || i32.Load() != 9 {
		t.Fatal("Int32 operations")
	}
	u, err := NewUint64()
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Store(math.MaxUint64)
	if u.Add(1) != 0 {
		t.Fatal("Uint64 does not wrap")
	}
	f, err := NewFloat64()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Store(1.5)
	if f.Add(2.25) != 3.75 || f.Swap(1) != 3.75 || !f.CompareAndSwap(1, 2) || f.CompareAndSwap(1, 3) || f.Load() != 2 {
		t.Fatal("Float64 operations")
	}
}

func TestFloat64AddConcurrent(t *testing.T) {
	seg, _ := NewHeap(8)
	f, err := Float64At(seg, 0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10_000 {
				f.Add(0.5)
			}
		})
	}
	wg.Wait()
	if f.Load() != 20_000 {
		t.Fatalf("sum %v, want 20000", f.Load())
	}
}

func TestPlacement(t *testing.T) {
	seg, _ := NewHeap(16)
	for _, c := range []struct {
		name string
		err  error
		want error
	}{
		{"misaligned", second(Int64At(seg, 4)), ErrAlign},
		{"past end", second(Int64At(seg, 16)), ErrRange},
		{"negative", second(Int32At(seg, -4)), ErrRange},
		{"last word", second(Int64At(seg, 8)), nil},
		{"array too long", second(ArrayAt[int64](seg, 0, 3)), ErrRange},
		{"array misaligned", second(ArrayAt[int64](seg, 4, 1)), ErrAlign},
		{"array fits", second(ArrayAt[int32](seg, 4, 3)), nil},
	} {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
		}
	}
}

func second[V any](_ V, err error) error { return err }

func TestArray(t *testing.T) {
	testArray[int32](t)
	testArray[int64](t)
	testArray[uint64](t)
	testArray[float64](t)
}

func testArray[T Elem](t *testing.T) {
	a, err := NewArray[T](10)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Len() != 10 {
		t.Fatalf("Len %d", a.Len())
	}
	for i := range a.Len() {
		a.Store(i, T(i))
	}
	if a.Add(3, 2) != 5 || a.Swap(4, 1) != 4 || !a.CompareAndSwap(4, 1, 8) || a.CompareAndSwap(4, 1, 9) {
		t.Fatalf("%T operations", a)
	}
	var sum T
	for i := range a.Len() {
		sum += a.Load(i)
	}
	if sum != 45+2-4+8 {
		t.Fatalf("%T sum %v", a, sum)
	}
	for _, i := range []int{-1, 10} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "out of range") {
					t.Errorf("Load(%d) did not panic with an index error: %v", i, r)
				}
			}()
			a.Load(i)
		}()
	}
}

func TestOpenKind(t *testing.T) {
	name := helperproc.Name(t)
	v, err := CreateInt64(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(name)
	defer v.Close()
	if _, err := OpenFloat64(name); !errors.Is(err, ErrKind) {
		t.Fatalf("OpenFloat64 of an int64 = %v, want ErrKind", err)
	}
	if _, err := OpenArray[int64](name); !errors.Is(err, ErrKind) {
		t.Fatalf("OpenArray of an int64 = %v, want ErrKind", err)
	}
	w, err := OpenInt64(name)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	v.Store(42)
	if w.Load() != 42 {
		t.Fatal("second mapping does not see the first")
	}
}

// arg is what a parent might hand a child: shared objects in a struct.
type arg struct {
	Count *Int64
	Sums  *Array[float64]
	Raw   *Segment
	Label string
}

// TestHandles encodes an argument as spawn does, then decodes it as a child
// would, with the "inherited" files being the ones collected.
func TestHandles(t *testing.T) {
	name := helperproc.Name(t)
	raw, err := Create(name, 16, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(name)
	defer raw.Close()
	count, _ := NewInt64()
	defer count.Close()
	sums, _ := NewArray[float64](3)
	defer sums.Close()

	var buf bytes.Buffer
	files, err := handoff.Collect(func() error {
		return gob.NewEncoder(&buf).Encode(arg{Count: count, Sums: sums, Raw: raw, Label: "x"})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("collected %d files, want 2 (the anonymous segments)", len(files))
	}
	handoff.SetInherited(files)
	defer handoff.SetInherited(nil)
	var got arg
	if err := gob.NewDecoder(&buf).Decode(&got); err != nil {
		t.Fatal(err)
	}
	defer got.Count.Close()
	defer got.Sums.Close()
	defer got.Raw.Close()
	got.Count.Add(7)
	got.Sums.Add(2, 1.5)
	copy(got.Raw.Bytes(), "hi")
	if count.Load() != 7 || sums.Load(2) != 1.5 || string(raw.Bytes()[:2]) != "hi" || got.Label != "x" {
		t.Fatal("decoded objects are not attached to the same memory")
	}
}

func TestHandleErrors(t *testing.T) {
	v, _ := NewInt64()
	defer v.Close()
	if err := gob.NewEncoder(&bytes.Buffer{}).Encode(arg{Count: v}); !errors.Is(err, handoff.ErrNoTransport) {
		t.Fatalf("encoding an anonymous value outside spawn = %v, want ErrNoTransport", err)
	}
	seg, _ := NewHeap(8)
	if err := gob.NewEncoder(&bytes.Buffer{}).Encode(arg{Raw: seg}); !errors.Is(err, ErrHeap) {
		t.Fatalf("encoding a heap segment = %v, want ErrHeap", err)
	}
}

func TestHandleKinds(t *testing.T) {
	name := helperproc.Name(t)
	v, err := CreateInt64(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(name)
	defer v.Close()
	b, err := v.GobEncode()
	if err != nil {
		t.Fatal(err)
	}
	var u Uint64
	if err := u.GobDecode(b); !errors.Is(err, ErrKind) {
		t.Fatalf("an Int64 handle decoded as a Uint64: %v, want ErrKind", err)
	}
	var w Int64
	if err := w.GobDecode(b); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// The name now holds another kind of segment.
	v.Close()
	Remove(name)
	f, err := CreateFloat64(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var x Int64
	if err := x.GobDecode(b); !errors.Is(err, ErrKind) {
		t.Fatalf("a handle to a replaced segment: %v, want ErrKind", err)
	}
}

func TestHandleClosed(t *testing.T) {
	name := helperproc.Name(t)
	v, err := CreateInt64(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(name)
	v.Close()
	if _, err := v.GobEncode(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("GobEncode after Close = %v, want ErrClosed", err)
	}
}
