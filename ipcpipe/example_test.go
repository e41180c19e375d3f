package ipcpipe_test

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ipckit/ipckit/ipcpipe"
)

// A ping-pong over a duplex pipe, then the end of the conversation: the
// other end drains what was sent and gets io.EOF. Between processes, b
// would travel to a child started by spawn in its argument.
func Example() {
	ctx := context.Background()
	a, b, err := ipcpipe.NewHeap(true, nil)
	if err != nil {
		panic(err)
	}
	defer b.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := b.Recv(ctx)
			if errors.Is(err, io.EOF) {
				fmt.Println("b: EOF")
				return
			}
			b.Send(ctx, append([]byte("pong "), msg...))
		}
	}()
	a.Send(ctx, []byte("ping"))
	reply, _ := a.Recv(ctx)
	fmt.Println(string(reply))
	a.Close()
	<-done
	// Output:
	// pong ping
	// b: EOF
}

// Typed values: a pointer-free struct travels as its bytes, anything else
// as gob; a nil pointer arrives as nil.
func ExampleTyped() {
	ctx := context.Background()
	r, w, _ := ipcpipe.NewHeap(false, nil) // one-way: r receives, w sends
	defer r.Close()
	defer w.Close()
	type job struct{ Name string }
	tw, _ := ipcpipe.NewTyped[*job](w)
	tr, _ := ipcpipe.NewTyped[*job](r)
	tw.Send(ctx, &job{Name: "digest"})
	tw.Send(ctx, nil)
	j, _ := tr.Recv(ctx)
	fmt.Println(j.Name)
	j, _ = tr.Recv(ctx)
	fmt.Println(j == nil)
	// Output:
	// digest
	// true
}
