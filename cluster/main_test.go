//go:build linux

package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/ipckit/ipckit/cluster"
	"github.com/ipckit/ipckit/spawn"
)

func TestMain(m *testing.M) {
	spawn.Main()
	goleak.VerifyTestMain(m)
}

// The tasks the tests' workers run, registered at package level so that
// every re-run of the test binary knows them.
var (
	square = spawn.RegisterTask("cl-square", func(ctx context.Context, x int) (int, error) { return x * x, nil })
	cube   = spawn.RegisterTask("cl-cube", func(ctx context.Context, x int) (int, error) { return x * x * x, nil })
	nobody = spawn.RegisterTask("cl-nobody", func(ctx context.Context, x int) (int, error) { return x, nil })

	// picky fails on multiples of 3 and panics on multiples of 5.
	picky = spawn.RegisterTask("cl-picky", func(ctx context.Context, x int) (int, error) {
		switch {
		case x%5 == 0:
			panic(fmt.Sprint("five divides ", x))
		case x%3 == 0:
			return 0, fmt.Errorf("three divides %d", x)
		}
		return x, nil
	})
	echo   = spawn.RegisterTask("cl-echo", func(ctx context.Context, x any) (any, error) { return x, nil })
	strlen = spawn.RegisterTask("cl-strlen", func(ctx context.Context, s string) (int, error) { return len(s), nil })

	// block records its run (the files Key.1, Key.2, ... in Dir), sleeps
	// for Sleep and, on its first Runs runs, blocks until its process is
	// killed; later runs return the run's number.
	block = spawn.RegisterTask("cl-block", func(ctx context.Context, a markArg) (int, error) {
		k := a.mark()
		time.Sleep(a.Sleep)
		if k <= a.Runs {
			select {}
		}
		return k, nil
	})

	// die records its run and kills its worker: the Serve process whose
	// local pool runs it.
	die = spawn.RegisterTask("cl-die", func(ctx context.Context, a markArg) (int, error) {
		a.mark()
		syscall.Kill(os.Getppid(), syscall.SIGKILL)
		select {}
	})

	// serve runs a worker for the named tasks.
	serve = spawn.Register("cl-serve", func(ctx context.Context, a serveArg) error {
		nc, err := nats.Connect(a.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		if err != nil {
			return err
		}
		defer nc.Close()
		all := map[string]cluster.Handler{}
		for _, h := range []cluster.Handler{cluster.Handle(square), cluster.Handle(cube), cluster.Handle(echo),
			cluster.Handle(strlen), cluster.Handle(block), cluster.Handle(die), cluster.Handle(picky)} {
			all[h.Name()] = h
		}
		var hs []cluster.Handler
		for _, n := range a.Tasks {
			hs = append(hs, all[n])
		}
		return cluster.Serve(ctx, nc, &cluster.ServeOptions{Workers: a.Workers, AckWait: a.AckWait, MaxDeliver: a.MaxDeliver}, hs...)
	})
)

type markArg struct {
	Dir, Key string
	Runs     int
	Sleep    time.Duration
}

// mark creates the next of Key.1, Key.2, ... and returns its number.
func (a markArg) mark() int {
	for k := 1; ; k++ {
		f, err := os.OpenFile(filepath.Join(a.Dir, fmt.Sprintf("%s.%d", a.Key, k)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
			return k
		}
		if !errors.Is(err, os.ErrExist) {
			panic(err)
		}
	}
}

// marks counts the runs recorded under key.
func marks(t *testing.T, dir, key string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, key+".*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

type serveArg struct {
	URL        string
	Tasks      []string
	Workers    int
	AckWait    time.Duration
	MaxDeliver int
}

// env is one test's server and connection.
type env struct {
	t   *testing.T
	srv *cluster.Server
	dir string
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	var err error
	if e.srv, err = cluster.StartServer(&cluster.ServerOptions{Dir: e.dir}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.srv.Shutdown() })
	if e.nc, err = nats.Connect(e.srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.nc.Close)
	if e.js, err = jetstream.New(e.nc); err != nil {
		t.Fatal(err)
	}
	return e
}

// worker starts a worker process for tasks and waits until it is
// fetching each of them.
func (e *env) worker(a serveArg) *spawn.Process {
	e.t.Helper()
	return e.startWorker(a, true)
}

// startWorker starts a worker process for tasks and, if wait, waits until
// it is fetching each of them.
func (e *env) startWorker(a serveArg, wait bool) *spawn.Process {
	e.t.Helper()
	a.URL = e.srv.URL()
	if a.Workers == 0 {
		a.Workers = 1
	}
	if a.AckWait == 0 {
		a.AckWait = 30 * time.Second
	}
	before := map[string]int{}
	for _, n := range a.Tasks {
		before[n] = e.waiting(n)
	}
	p, err := spawn.Start(context.Background(), serve, a, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		p.Kill()
		p.Wait()
	})
	for _, n := range a.Tasks {
		if wait {
			e.waitFor(fmt.Sprintf("worker %d fetching %s", p.Pid, n), func() bool { return e.waiting(n) > before[n] }, p)
		}
	}
	return p
}

// state describes the streams and consumers, for a failure's message.
func (e *env) state() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var b strings.Builder
	for _, sn := range []string{"IPCKIT_TASKS", "IPCKIT_RESULTS"} {
		s, err := e.js.Stream(ctx, sn)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", sn, err)
			continue
		}
		info, err := s.Info(ctx)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", sn, err)
			continue
		}
		fmt.Fprintf(&b, "%s: %d messages\n", sn, info.State.Msgs)
		for c := range s.ListConsumers(ctx).Info() {
			fmt.Fprintf(&b, "  %s: pending %d, ack pending %d, redelivered %d, waiting %d\n",
				c.Name, c.NumPending, c.NumAckPending, c.NumRedelivered, c.NumWaiting)
		}
	}
	return b.String()
}

// waiting returns the pull requests waiting on task's consumer: one per
// idle worker slot.
func (e *env) waiting(task string) int {
	c, err := e.js.Consumer(context.Background(), "IPCKIT_TASKS", "task_"+task)
	if err != nil {
		return 0
	}
	info, err := c.Info(context.Background())
	if err != nil {
		return 0
	}
	return info.NumWaiting
}

// waitFor polls cond until it holds, failing after 20 s or if p exits.
func (e *env) waitFor(what string, cond func() bool, p *spawn.Process) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if p != nil {
			select {
			case <-p.Done():
				e.t.Fatalf("waiting for %s: the worker exited: %v", what, p.Wait())
			default:
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("still waiting for %s after 20s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ctx returns a context that ends after 30 s: a call that would hang
// fails the test instead.
func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// pool makes a pool of task on e's connection.
func pool[In, Out any](e *env, task *spawn.Task[In, Out], o *cluster.Options) *cluster.Pool[In, Out] {
	e.t.Helper()
	p, err := cluster.NewPool(context.Background(), e.nc, task, o)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { p.Close() })
	return p
}

// queued returns the messages left in the tasks stream.
func (e *env) queued() uint64 {
	s, err := e.js.Stream(context.Background(), "IPCKIT_TASKS")
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}
