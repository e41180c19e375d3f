//go:build linux

package spawn_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

// Functions the tests run in children. They are registered at package level,
// as spawn requires, so the re-run test binary knows them too.
var (
	nop = spawn.Register("nop", func(ctx context.Context, _ struct{}) error { return nil })

	exitWith = spawn.Register("exit", func(ctx context.Context, code int) error {
		os.Exit(code)
		return nil
	})

	killSelf = spawn.Register("killself", func(ctx context.Context, sig syscall.Signal) error {
		syscall.Kill(os.Getpid(), sig)
		time.Sleep(time.Minute)
		return nil
	})

	fail = spawn.Register("fail", func(ctx context.Context, msg string) error { return errors.New(msg) })

	boom = spawn.Register("boom", func(ctx context.Context, v string) error { panic(v) })

	goexit = spawn.Register("goexit", func(ctx context.Context, _ struct{}) error {
		runtime.Goexit()
		return nil
	})

	sleep = spawn.Register("sleep", func(ctx context.Context, d time.Duration) error {
		time.Sleep(d)
		return nil
	})

	add = spawn.Register("add", func(ctx context.Context, a addArg) error {
		defer a.V.Close()
		for range a.N {
			a.V.Add(a.Step)
		}
		if a.Inner == nil || a.Inner.Tag != "nested" || len(a.Inner.List) != 3 {
			return fmt.Errorf("nested argument arrived as %+v", a.Inner)
		}
		return nil
	})

	big = spawn.Register("big", func(ctx context.Context, b bigArg) error {
		if len(b.Data) != bigSize {
			return fmt.Errorf("got %d bytes", len(b.Data))
		}
		if sha256.Sum256(b.Data) != b.Sum {
			return errors.New("checksum mismatch")
		}
		return nil
	})

	// report prints what the child sees, for the option tests.
	report = spawn.Register("report", func(ctx context.Context, key string) error {
		wd, _ := os.Getwd()
		_, set := os.LookupEnv("IPCKIT_SPAWN")
		fmt.Printf("dir=%s %s=%s spawnvar=%v\n", wd, key, os.Getenv(key), set)
		fmt.Fprintln(os.Stderr, "to stderr")
		return nil
	})

	// nested starts a grandchild, which must not be confused by its parent's
	// spawn variable.
	nested = spawn.Register("nested", func(ctx context.Context, msg string) error {
		return spawn.Run(ctx, fail, msg, nil)
	})
)

type inner struct {
	Tag  string
	List []int
}

type addArg struct {
	V     *shm.Int64
	N     int
	Step  int64
	Inner *inner
}

const bigSize = 10 << 20

type bigArg struct {
	Data []byte
	Sum  [32]byte
}

func TestMain(m *testing.M) {
	// The benchmark's peer: a re-run of the same binary that exits at once.
	helperproc.Register("exit", func([]string) error { return nil })
	// parent starts a long-sleeping child from a goroutine locked to a
	// thread that then exits (golang/go#27505: a child forked from that
	// thread would get its death signal now), prints the child's pid, and
	// waits to be killed.
	helperproc.Register("parent", func([]string) error {
		type res struct {
			p   *spawn.Process
			err error
			tid int
		}
		// Keep this goroutine on the main thread, which the runtime never
		// ends, so that the goroutine below runs on another one.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		ch := make(chan res)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread ends with the goroutine
			p, err := spawn.Start(context.Background(), sleep, time.Hour, nil)
			ch <- res{p, err, syscall.Gettid()}
		}()
		r := <-ch
		if r.err != nil {
			return r.err
		}
		// Wait for the thread that called Start to be gone.
		task := fmt.Sprintf("/proc/self/task/%d", r.tid)
		for i := 0; ; i++ {
			if _, err := os.Stat(task); errors.Is(err, os.ErrNotExist) {
				break
			}
			if i == 500 {
				return fmt.Errorf("thread %d did not exit", r.tid)
			}
			time.Sleep(2 * time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
		fmt.Println(r.p.Pid)
		return r.p.Wait()
	})
	spawn.Main()
	helperproc.Run(m)
}
