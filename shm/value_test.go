//go:build linux

package shm

import (
	"bytes"
	"encoding/gob"
	"errors"
	"math"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// The integer values have every method of the sync/atomic type of their
// width, with the same signature, declared on the type itself (so go doc
// lists them); Float64 has the same set but for And and Or.
func TestValueMethods(t *testing.T) {
	for _, c := range []struct {
		shm, atomic any
		skip        []string
	}{
		{(*Int32)(nil), (*atomic.Int32)(nil), nil},
		{(*Int64)(nil), (*atomic.Int64)(nil), nil},
		{(*Uint64)(nil), (*atomic.Uint64)(nil), nil},
		{(*Float64)(nil), (*atomic.Uint64)(nil), []string{"And", "Or"}},
		{(*Uint32)(nil), (*atomic.Uint32)(nil), nil},
		{(*Float32)(nil), (*atomic.Uint32)(nil), []string{"And", "Or"}},
		{(*Int8)(nil), (*atomic.Int32)(nil), []string{}},
		{(*Uint8)(nil), (*atomic.Uint32)(nil), []string{}},
		{(*Int16)(nil), (*atomic.Int32)(nil), []string{}},
		{(*Uint16)(nil), (*atomic.Uint32)(nil), []string{}},
		{(*Bool)(nil), (*atomic.Bool)(nil), nil},
	} {
		st, at := reflect.TypeOf(c.shm), reflect.TypeOf(c.atomic)
		for m := range at.Methods() {
			if slices.Contains(c.skip, m.Name) {
				continue
			}
			got, ok := st.MethodByName(m.Name)
			if !ok {
				t.Errorf("%v has no %s", st, m.Name)
				continue
			}
			if c.skip == nil && got.Type.String() != strings.Replace(m.Type.String(), at.String(), st.String(), 1) {
				t.Errorf("%v.%s is %v, want the signature of %v.%s, %v", st, m.Name, got.Type, at, m.Name, m.Type)
			}
		}
	}
	v, err := NewInt32()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	v.Store(0b1100)
	if v.And(0b1010) != 0b1100 || v.Or(0b0001) != 0b1000 || v.Load() != 0b1001 {
		t.Fatalf("And, Or: %b", v.Load())
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
		{"misaligned", second(Int64At(seg, 4)), os.ErrInvalid},
		{"past end", second(Int64At(seg, 16)), os.ErrInvalid},
		{"negative", second(Int32At(seg, -4)), os.ErrInvalid},
		{"last word", second(Int64At(seg, 8)), nil},
		{"array too long", second(ArrayAt[int64](seg, 0, 3)), os.ErrInvalid},
		{"array misaligned", second(ArrayAt[int64](seg, 4, 1)), os.ErrInvalid},
		{"array negative", second(ArrayAt[int64](seg, 0, -1)), os.ErrInvalid},
		{"array length", second(NewArray[int64](MaxSize/8 + 1)), os.ErrInvalid},
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
	a := arg{Count: count, Sums: sums, Raw: raw, Label: "x"}
	files, ids, release := handoff.Collect(a)
	err = gob.NewEncoder(&buf).Encode(a)
	release()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("collected %d files, want 2 (the anonymous segments)", len(files))
	}
	handoff.SetInherited(ids, files)
	defer handoff.SetInherited(nil, nil)
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
