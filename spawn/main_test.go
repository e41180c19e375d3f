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
		return spawn.Run(ctx, fail, msg)
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
	// thread that then exits (golang/go#27505), prints the child's pid, and
	// waits to be killed.
	helperproc.Register("parent", func([]string) error {
		type res struct {
			p   *spawn.Process
			err error
		}
		ch := make(chan res)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread dies with the goroutine
			p, err := spawn.Start(context.Background(), sleep, time.Hour)
			ch <- res{p, err}
		}()
		r := <-ch
		if r.err != nil {
			return r.err
		}
		time.Sleep(100 * time.Millisecond) // let the locked thread die
		fmt.Println(r.p.Pid)
		return r.p.Wait()
	})
	spawn.Main()
	helperproc.Run(m)
}
