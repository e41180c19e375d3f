//go:build linux

package semaphore

import (
	"errors"
	"testing"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/internal/opentest"
	"github.com/ipckit/ipckit/shm"
)

// racingOpens is opentest.RacingOpens on a fresh name, 1,000 times.
// Before CreateSemaphore and CreateBarrier built their object in the
// unnamed segment (shm.Kind.CreateInit), an open could find the segment
// with its magic not yet stored: ErrCorrupt (191 in 20,000 opens of
// semaphores).
func racingOpens(t *testing.T, create, open opentest.Opener) {
	t.Helper()
	opentest.RacingOpens(t, 1000, helperproc.Name(t), create, open, shm.Remove)
}

func TestOpenSemaphoreRacingCreate(t *testing.T) {
	racingOpens(t,
		func(name string) (func() error, error) {
			s, err := CreateSemaphore(name, 3, &SemaphoreOptions{Holders: 4})
			if err != nil {
				return nil, err
			}
			return s.Close, nil
		},
		func(name string) (func() error, error) {
			s, err := OpenSemaphore(name)
			if err != nil {
				return nil, err
			}
			if !s.TryAcquire() {
				s.Close()
				return nil, errors.New("an opened semaphore of value 3 has no permit")
			}
			if err := s.Release(); err != nil {
				s.Close()
				return nil, err
			}
			return s.Close, nil
		})
}

func TestOpenBarrierRacingCreate(t *testing.T) {
	racingOpens(t,
		func(name string) (func() error, error) {
			b, err := CreateBarrier(name, 3, nil)
			if err != nil {
				return nil, err
			}
			return b.Close, nil
		},
		func(name string) (func() error, error) {
			b, err := OpenBarrier(name)
			if err != nil {
				return nil, err
			}
			if b.Parties() != 3 {
				b.Close()
				return nil, errors.New("an opened barrier has the wrong number of parties")
			}
			return b.Close, nil
		})
}
