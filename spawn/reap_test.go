//go:build linux

package spawn_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

var (
	// leaveGrandchild starts a grandchild that keeps the child's stdout
	// open, publishes its pid in v, and returns nil.
	leaveGrandchild = spawn.Register("leave-grandchild", func(ctx context.Context, v *shm.Int64) error {
		defer v.Close()
		cmd := exec.Command("sleep", "30")
		cmd.Stdout = os.Stdout
		if err := cmd.Start(); err != nil {
			return err
		}
		v.Store(int64(cmd.Process.Pid))
		return nil
	})

	hello = spawn.Register("hello", func(ctx context.Context, _ struct{}) error {
		fmt.Println("hello")
		return errors.New("failed on its own")
	})
)

// TestGrandchildHoldsStdout: a child that returned nil while its grandchild
// keeps its (non-*os.File) stdout open succeeds, after at most the one
// second WaitDelay, instead of failing with exec.ErrWaitDelay.
func TestGrandchildHoldsStdout(t *testing.T) {
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Skip("no sleep command")
	}
	v, err := shm.NewInt64()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	begin := time.Now()
	err = spawn.Run(t.Context(), leaveGrandchild, v, &spawn.Options{Stdout: &out})
	pid := int(v.Load())
	v.Close()
	if pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
	if pid <= 0 {
		t.Fatal("the grandchild was not started")
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Fatalf("Wait took %v", d)
	}
}

// blockingWriter signals its first Write and blocks it until released.
type blockingWriter struct {
	once    sync.Once
	got     chan struct{}
	release chan struct{}
	buf     bytes.Buffer
}

func (w *blockingWriter) Write(b []byte) (int, error) {
	w.once.Do(func() { close(w.got) })
	<-w.release
	return w.buf.Write(b)
}

// TestCancelAfterExit cancels ctx after the child exited on its own, while
// Wait is still copying its output, and lets the copy finish only once
// ctx's kill has been tried: the child's own result (its error) stands,
// not "killed: context canceled".
func TestCancelAfterExit(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w := &blockingWriter{got: make(chan struct{}), release: make(chan struct{})}
	tried := make(chan struct{})
	p, err := spawn.StartKillHook(ctx, hello, struct{}{}, &spawn.Options{Stdout: w}, func(bool) { close(tried) })
	if err != nil {
		t.Fatal(err)
	}
	released := false
	defer func() {
		if !released {
			close(w.release)
		}
	}()
	<-w.got
	// The child wrote and returns; wait until it has exited (a zombie, or
	// reaped by Wait, which is now blocked on the copy).
	deadline := time.Now().Add(5 * time.Second)
	for !exited(p.Pid) {
		if time.Now().After(deadline) {
			t.Fatal("child did not exit")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	// Once the kill has been tried, reap waits for its record before it
	// judges the death. Were the copy released before, reap could stop
	// the kill from running at all, and the test would prove nothing.
	select {
	case <-tried:
	case <-time.After(10 * time.Second):
		t.Fatal("ctx's kill not tried 10 s after cancel")
	}
	close(w.release)
	released = true
	err = p.Wait()
	var ce *spawn.ChildError
	if !errors.As(err, &ce) || ce.Msg != "failed on its own" || errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want the child's own error", err)
	}
	if p.ExitCode() != 1 {
		t.Fatalf("ExitCode = %d", p.ExitCode())
	}
	if w.buf.String() != "hello\n" {
		t.Fatalf("stdout = %q", w.buf.String())
	}
}

// exited reports whether pid is a zombie or gone.
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return err == nil && i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// seesFile fails if the child holds a descriptor for path.
var seesFile = spawn.Register("sees-file", func(ctx context.Context, path string) error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); l == path {
			return fmt.Errorf("descriptor %s is %s", e.Name(), l)
		}
	}
	return nil
})

// TestStrayDescriptorsClosed: a descriptor the parent opened without
// O_CLOEXEC is closed in the child before its function runs.
func TestStrayDescriptorsClosed(t *testing.T) {
	path := t.TempDir() + "/stray"
	fd, err := syscall.Open(path, syscall.O_CREAT|syscall.O_RDWR, 0o600) // no O_CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := spawn.Run(t.Context(), seesFile, path, nil); err != nil {
		t.Fatalf("child: %v", err)
	}
}
