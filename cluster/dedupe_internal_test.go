//go:build linux

package cluster

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipckit/ipckit/spawn"
)

var tenfold = spawn.RegisterTask("cl-tenfold", func(ctx context.Context, x int) (int, error) { return 10 * x, nil })

// A chunk answered twice (its worker died after storing its results, say,
// and the stream no longer remembered their message ID) reports once: the
// first answer stands, and each item is yielded once.
func TestDuplicateResultsDropped(t *testing.T) {
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
	js, _ := jetstream.New(nc)
	n := names{"IPCKIT"}
	if err := ensureStreams(ctx, js, n, FileStorage); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, n.tasksStream(), jetstream.ConsumerConfig{
		Durable: n.taskConsumer(tenfold.Name()), FilterSubject: n.taskFilter(tenfold.Name()), AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPool(ctx, nc, tenfold, &Options{ChunkSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	// The fake worker: each chunk's right answer, then a wrong one under
	// another message ID.
	fake := func(ctx context.Context) {
		for ctx.Err() == nil {
			m, err := cons.Next(jetstream.FetchContext(ctx))
			if err != nil {
				continue
			}
			ref, _ := refOf(m.Headers())
			var tc taskChunk[int]
			if err := decode(m.Data(), &tc); err != nil {
				t.Error(err)
				return
			}
			for k, kind := range []string{"first", "second"} {
				rc := resultChunk[int]{N: len(tc.Items)}
				for _, it := range tc.Items {
					rc.Outs = append(rc.Outs, wireItem[int]{V: 10*it.V + k})
				}
				data, _ := encode(&rc)
				rm := nats.NewMsg(n.resultSubject(ref.pool))
				rm.Data = data
				ref.setHeader(rm.Header)
				if _, err := js.PublishMsg(ctx, rm, jetstream.WithMsgID(ref.id(kind))); err != nil {
					if ctx.Err() == nil {
						t.Error(err)
					}
					return
				}
			}
			m.Ack()
		}
	}
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		fake(fctx)
	}()
	defer func() { stop(); <-done }()

	out, err := p.Map(ctx, []int{1, 2, 3, 4, 5})
	if want := []int{10, 20, 30, 40, 50}; err != nil || !slices.Equal(out, want) {
		t.Fatalf("Map = %v, %v; want %v", out, err, want)
	}
	seen := map[int]int{}
	for i, r := range p.ImapUnordered(ctx, slices.Values([]int{1, 2, 3})) {
		if r.Err != nil || r.Value != 10*(i+1) {
			t.Fatalf("ImapUnordered[%d] = %+v", i, r)
		}
		seen[i]++
	}
	if len(seen) != 3 || seen[0] != 1 || seen[1] != 1 || seen[2] != 1 {
		t.Fatalf("ImapUnordered yielded %v, want each of 3 items once", seen)
	}
}
