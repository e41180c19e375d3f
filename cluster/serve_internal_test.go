//go:build linux

package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ipckit/ipckit/spawn"
)

// A worker refuses a chunk whose caller's task has other types under the
// same name (another build of the program, say): its items fail with
// spawn.ErrMismatch's text, and Serve, run in this process, returns nil
// when its ctx ends.
func TestTypeMismatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := StartServer(&ServerOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- Serve(sctx, nc, &ServeOptions{Workers: 1}, Handle(tenfold)) }()
	var p *Pool[int, int]
	for p == nil {
		if p, err = NewPool(ctx, nc, tenfold, nil); err != nil && !errors.Is(err, ErrNoWorker) {
			t.Fatal(err)
		}
		select {
		case err := <-served:
			t.Fatalf("Serve returned %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	defer p.Close()
	if y, err := p.Apply(ctx, 4); y != 40 || err != nil {
		t.Fatalf("Apply(4) = %d, %v", y, err)
	}
	p.types = "string,int" // the caller's tenfold takes strings
	_, err = p.Apply(ctx, 4)
	var te *spawn.TaskError
	if !errors.As(err, &te) || !strings.Contains(te.Msg, spawn.ErrMismatch.Error()) || !strings.Contains(te.Msg, "string,int") {
		t.Fatalf("Apply with other types = %v, want a TaskError naming the mismatch", err)
	}
	stop()
	if err := <-served; err != nil {
		t.Fatalf("Serve = %v, want nil after its ctx ended", err)
	}
}
