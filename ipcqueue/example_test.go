package ipcqueue_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

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

// Capacity is exact: a 256-byte queue holds 248 bytes of messages, so three
// 56-byte messages (64 bytes each with their header), and never four.
func ExampleQueue_Capacity() {
	q, _ := ipcqueue.NewHeap(256, nil)
	defer q.Close()
	n := 0
	for {
		ok, err := q.TryPut(make([]byte, 56))
		if err != nil || !ok {
			break
		}
		n++
	}
	fmt.Println(q.Capacity(), n)
	// Output: 248 3
}

// Close releases one handle; a Get blocked on it returns an error wrapping
// os.ErrClosed, and the queue goes on for its other handles.
func ExampleQueue_Close() {
	q, _ := ipcqueue.NewHeap(4096, nil)
	got := make(chan error)
	go func() {
		_, err := q.Get(context.Background()) // blocks: the queue is empty
		got <- err
	}()
	time.Sleep(10 * time.Millisecond)
	q.Close()
	fmt.Println(errors.Is(<-got, os.ErrClosed))
	// Output: true
}
