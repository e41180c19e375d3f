package ipcqueue_test

import (
	"context"
	"fmt"
	"io"

	"github.com/ipckit/ipckit/ipcqueue"
)

func Example() {
	// A 64 KiB queue; in real use, New (anonymous, passed to children
	// started by spawn) or Create/Open (named).
	q, err := ipcqueue.NewHeap(64<<10, nil)
	if err != nil {
		panic(err)
	}
	defer q.Close() // release this handle's mapping

	ctx := context.Background()
	for _, s := range []string{"one", "two", "three"} {
		q.Put(ctx, []byte(s))
	}
	q.Shutdown() // for everyone: no more Puts, Gets drain then io.EOF
	for {
		msg, err := q.Get(ctx)
		if err == io.EOF {
			break
		}
		fmt.Println(string(msg))
	}
	fmt.Println(q.Stats().Gets, "messages")
	// Output:
	// one
	// two
	// three
	// 3 messages
}

func ExampleTyped() {
	q, _ := ipcqueue.NewHeap(4096, nil)
	defer q.Close()
	type job struct {
		ID   int64
		Size float64
	}
	jobs, _ := ipcqueue.NewTyped[job](q) // pointer-free: copied as bytes
	jobs.Put(context.Background(), job{ID: 7, Size: 1.5})
	j, _ := jobs.Get(context.Background())
	fmt.Println(j.ID, j.Size, jobs.Fixed())
	// Output: 7 1.5 true
}
