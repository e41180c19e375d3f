//go:build linux

package semaphore

import (
	"errors"
	"testing"
	"unsafe"

	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/shm"
)

// TestLayout pins every shared field of every type at the offset its
// design comment gives, and checks that 64-bit atomics sit at 8-byte
// offsets and futex words at 4. The layouts are ABI between processes
// (possibly of different builds): a change here needs a layout version.
func TestLayout(t *testing.T) {
	type field struct {
		name string
		p    unsafe.Pointer
		off  uintptr
		size uintptr
		// futex reports whether the word is slept on with futex(2).
		futex bool
	}
	check := func(t *testing.T, base []byte, fields []field) {
		t.Helper()
		b := uintptr(unsafe.Pointer(&base[0]))
		if b%8 != 0 {
			t.Fatalf("object at %#x is not 8-byte aligned", b)
		}
		for _, f := range fields {
			got := uintptr(f.p) - b
			if got != f.off {
				t.Errorf("%s at offset %d, want %d", f.name, got, f.off)
			}
			if got%f.size != 0 {
				t.Errorf("%s: %d-byte atomic at offset %d", f.name, f.size, got)
			}
			if f.futex && (f.size != 4 || got%4 != 0) {
				t.Errorf("%s: futex word of %d bytes at offset %d", f.name, f.size, got)
			}
		}
	}
	// A robust lock (a Mutex, a guard): the lock word at 0, its
	// sleepers word (the futex word) at 8, 16 bytes in all.
	mutexFields := func(mem []byte, l *robust.Lock, name string) []field {
		return []field{
			{name + ".word", unsafe.Pointer(lockWord(mem)), 0, 8, false},
			{name + ".sleepers", unsafe.Pointer(l.Sleepers()), 8, 4, true},
		}
	}
	seg, err := shm.NewHeap(4096)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("Mutex", func(t *testing.T) {
		if MutexSize != 16 || robust.Size != 16 || robust.OffWord != 0 || robust.OffSleepers != 8 {
			t.Fatalf("MutexSize %d, robust.Size %d, offsets %d %d", MutexSize, robust.Size, robust.OffWord, robust.OffSleepers)
		}
		m, err := MutexAt(seg, 64)
		if err != nil {
			t.Fatal(err)
		}
		check(t, m.mem, mutexFields(m.mem, m.lock, "mutex"))
		// The lock word is the one the lock uses.
		m.Lock()
		if h, _ := m.lock.Holder(); lockWord(m.mem).Load() != uint64(h) || h == 0 {
			t.Errorf("lock word %#x, holder %v", lockWord(m.mem).Load(), h)
		}
		m.Unlock()
	})
	t.Run("Semaphore", func(t *testing.T) {
		const holders = 3
		if semHeader != 64 || slotSize != 16 || SemaphoreSize(&SemaphoreOptions{Holders: holders}) != 64+16*holders {
			t.Fatalf("semHeader %d, slotSize %d", semHeader, slotSize)
		}
		s, err := InitSemaphoreAt(seg, 128, 1, &SemaphoreOptions{Holders: holders})
		if err != nil {
			t.Fatal(err)
		}
		fs := append(mutexFields(s.mem, s.guard, "guard"),
			field{"seq", unsafe.Pointer(s.seq), 16, 4, true},
			field{"sleepers", unsafe.Pointer(s.sleepers), 20, 4, false},
			field{"magic", unsafe.Pointer(u32(s.mem, offSemMagic)), 24, 4, false},
			field{"flags", unsafe.Pointer(s.flags), 28, 4, false},
			field{"base", unsafe.Pointer(s.base), 32, 8, false},
			field{"avail", unsafe.Pointer(s.avail), 40, 8, false},
			field{"nslots", unsafe.Pointer(u32(s.mem, offSemNSlots)), 48, 4, false},
			field{"reclaimed", unsafe.Pointer(s.reclaimed), 56, 8, false},
		)
		for i := range holders {
			sl := s.slot(i)
			o := uintptr(64 + 16*i)
			fs = append(fs,
				field{"slot.token", unsafe.Pointer(sl.token), o, 8, false},
				field{"slot.count", unsafe.Pointer(sl.count), o + 8, 4, false})
		}
		check(t, s.mem, fs)
		if u32(s.mem, offSemMagic).Load() != semMagic || u32(s.mem, offSemNSlots).Load() != holders {
			t.Error("magic or nslots not where attach reads them")
		}
	})
	t.Run("Barrier", func(t *testing.T) {
		const parties = 3
		if barHeader != 40 || BarrierSize(parties) != 40+8*parties {
			t.Fatalf("barHeader %d, BarrierSize %d", barHeader, BarrierSize(parties))
		}
		b, err := InitBarrierAt(seg, 512, parties)
		if err != nil {
			t.Fatal(err)
		}
		fs := append(mutexFields(b.mem, b.guard, "guard"),
			field{"gen", unsafe.Pointer(b.gen), 16, 4, true},
			field{"parties", unsafe.Pointer(u32(b.mem, offBarParties)), 20, 4, false},
			field{"arrived", unsafe.Pointer(b.arrive), 24, 4, false},
			field{"magic", unsafe.Pointer(u32(b.mem, offBarMagic)), 28, 4, false},
			field{"outcomes", unsafe.Pointer(b.outcomes), 32, 8, false},
		)
		for i := range parties {
			fs = append(fs, field{"slot", unsafe.Pointer(b.slot(i)), uintptr(40 + 8*i), 8, false})
		}
		check(t, b.mem, fs)
		if u32(b.mem, offBarParties).Load() != parties || u32(b.mem, offBarMagic).Load() != barMagic {
			t.Error("parties or magic not where attach reads them")
		}
	})
	t.Run("Event", func(t *testing.T) {
		e, err := EventAt(seg, 1024)
		if err != nil {
			t.Fatal(err)
		}
		if EventSize != 8 {
			t.Fatalf("EventSize %d", EventSize)
		}
		check(t, e.mem, []field{{"word", unsafe.Pointer(e.word), 0, 4, true}})
	})
	t.Run("FileRecord", func(t *testing.T) {
		mem := seg.Bytes()[2048 : 2048+fileRecSize]
		r, err := fileRecordAt(mem)
		if err != nil {
			t.Fatal(err)
		}
		if fileRecSize != 64 {
			t.Fatalf("fileRecSize %d", fileRecSize)
		}
		check(t, mem, []field{
			{"magic", unsafe.Pointer(r.magic), 0, 4, false},
			{"dirty", unsafe.Pointer(r.dirty), 4, 4, false},
			{"state", unsafe.Pointer(r.state), 8, 4, false},
			{"sleepers", unsafe.Pointer(r.sleepers), 12, 4, true},
			{"owner", unsafe.Pointer(r.owner), 16, 8, false},
		})
	})
	t.Run("Constants", func(t *testing.T) {
		// Values that other processes read: pinned like offsets.
		if wordInconsistent != 1<<62 || wordNotRecoverable != 1<<63 || stateConsistent != 0 ||
			stateInconsistent != 1 || stateNotRecoverable != 2 || semMagic != 0x32414d53 ||
			barMagic != 0x33524142 || fileMagic != 0x32544d46 || brokenBit != 1 || genIncrement != 2 ||
			flagBounded != 1 || eventFlag != 1 || eventSets != 2 {
			t.Fatal("a shared constant changed")
		}
		// The lock word's flags are internal/robust's: check them on a lock.
		m, err := MutexAt(seg, 3072)
		if err != nil {
			t.Fatal(err)
		}
		lockWord(m.mem).Store(wordNotRecoverable)
		if err := m.Lock(); !errors.Is(err, ErrNotRecoverable) {
			t.Fatalf("Lock of word %#x = %v, want ErrNotRecoverable", uint64(wordNotRecoverable), err)
		}
		lockWord(m.mem).Store(uint64(self()) | wordInconsistent)
		if h, inc := m.lock.Holder(); h != self() || !inc {
			t.Fatalf("word %#x: holder %v, inconsistent %v", uint64(self())|wordInconsistent, h, inc)
		}
	})
}
