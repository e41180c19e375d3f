package main

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/ipckit/ipckit/semaphore"
	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

// locker is what the uncontended lock figures time: one Lock and Unlock.
type locker interface {
	Lock() error
	Unlock() error
}

// timeLockPairs times Lock+Unlock pairs of l.
func timeLockPairs(cfg *config, l locker) (float64, error) {
	return timeOps(cfg, func(n int) error {
		for range n {
			if err := l.Lock(); err != nil {
				return err
			}
			if err := l.Unlock(); err != nil {
				return err
			}
		}
		return nil
	})
}

// rawFlock is the peer of the file locks: flock(2) LOCK_EX and LOCK_UN on a
// file kept open, nothing else.
type rawFlock struct{ f *os.File }

func (r rawFlock) Lock() error   { return syscall.Flock(int(r.f.Fd()), syscall.LOCK_EX) }
func (r rawFlock) Unlock() error { return syscall.Flock(int(r.f.Fd()), syscall.LOCK_UN) }

func newRawFlock(dir string) (rawFlock, error) {
	f, err := os.OpenFile(filepath.Join(dir, "raw.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	return rawFlock{f}, err
}

// withTempDir runs f with a fresh directory removed afterwards.
func withTempDir(f func(dir string) (float64, error)) (float64, error) {
	dir, err := os.MkdirTemp("", "ipcbench-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	return f(dir)
}

// flockPeer times the raw flock pair.
var flockPeer = side{"flock", func(cfg *config) (float64, error) {
	return withTempDir(func(dir string) (float64, error) {
		l, err := newRawFlock(dir)
		if err != nil {
			return 0, err
		}
		defer l.f.Close()
		return timeLockPairs(cfg, l)
	})
}}

type syncMutex struct{ sync.Mutex }

func (m *syncMutex) Lock() error   { m.Mutex.Lock(); return nil }
func (m *syncMutex) Unlock() error { m.Mutex.Unlock(); return nil }

func mutexMetrics() []metric {
	return []metric{
		{
			name: "mutex_uncontended_ns", unit: "ns/op",
			ours: side{"semaphore.Mutex", func(cfg *config) (float64, error) {
				m, err := semaphore.NewMutex()
				if err != nil {
					return 0, err
				}
				defer m.Close()
				return timeLockPairs(cfg, m)
			}},
			peers: []side{
				{"sync_mutex", func(cfg *config) (float64, error) { return timeLockPairs(cfg, new(syncMutex)) }},
				flockPeer,
			},
		},
		mutexHandoffMetric(),
		{
			name: "filemutex_uncontended_ns", unit: "ns/op",
			ours: side{"semaphore.FileMutex", func(cfg *config) (float64, error) {
				return withTempDir(func(dir string) (float64, error) {
					m, err := semaphore.NewFileMutex(filepath.Join(dir, "file.lock"))
					if err != nil {
						return 0, err
					}
					defer m.Close()
					return timeLockPairs(cfg, m)
				})
			}},
			peers: []side{flockPeer},
		},
	}
}

// mutexHandoff times lock handoffs between this process and a child that
// take turns under l; the child gets the lock through arg.
func mutexHandoff(cfg *config, l locker, arg pongArg) (float64, error) {
	turn, err := shm.NewInt64()
	if err != nil {
		return 0, err
	}
	defer turn.Close()
	arg.Turn = turn
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := spawn.Start(ctx, pong, arg, nil)
	if err != nil {
		return 0, err
	}
	ns, err := timeOps(cfg, func(n int) error { return takeTurns(l, turn, 0, n) })
	// Stop the child: a negative turn, set under the lock.
	if lerr := l.Lock(); lerr == nil {
		turn.Store(-1)
		l.Unlock()
	}
	if werr := p.Wait(); err == nil {
		err = werr
	}
	return ns / 2, err // each of our turns is two handoffs: to us and back
}

func mutexHandoffMetric() metric {
	return metric{
		name: "mutex_handoff_2proc_ns", unit: "ns/handoff",
		ours: side{"semaphore.Mutex", func(cfg *config) (float64, error) {
			m, err := semaphore.NewMutex()
			if err != nil {
				return 0, err
			}
			defer m.Close()
			return mutexHandoff(cfg, m, pongArg{Mutex: m})
		}},
		peers: []side{{"flock", func(cfg *config) (float64, error) {
			return withTempDir(func(dir string) (float64, error) {
				l, err := newRawFlock(dir)
				if err != nil {
					return 0, err
				}
				defer l.f.Close()
				return mutexHandoff(cfg, l, pongArg{FlockPath: l.f.Name()})
			})
		}}},
	}
}
