package ipctopic_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ipckit/ipckit/ipctopic"
)

func Example() {
	// A heap topic for the example; in real use New (anonymous, passed to
	// children started by spawn) or Create/Open (named).
	t, err := ipctopic.NewHeap(&ipctopic.Options{Slots: 16, MaxMsg: 64})
	if err != nil {
		panic(err)
	}
	defer t.Close()

	ctx := context.Background()
	a, _ := t.Subscribe(ctx)
	t.Publish(ctx, []byte("one"))
	b, _ := t.Subscribe(ctx) // joins now: gets what is published from here on
	t.Publish(ctx, []byte("two"))
	t.Shutdown() // for everyone: subscribers drain, then io.EOF

	for _, s := range []*ipctopic.Subscriber{a, b} {
		var got []string
		for {
			msg, err := s.Recv(ctx)
			if err == io.EOF {
				break
			}
			got = append(got, string(msg))
		}
		fmt.Println(strings.Join(got, " "))
	}
	// Output:
	// one two
	// two
}

func ExampleLaggedError() {
	t, err := ipctopic.NewHeap(&ipctopic.Options{Slots: 4, Policy: ipctopic.Overwrite})
	if err != nil {
		panic(err)
	}
	defer t.Close()
	ctx := context.Background()
	s, _ := t.Subscribe(ctx)
	for i := range 10 {
		t.Publish(ctx, []byte{byte('0' + i)})
	}
	_, err = s.Recv(ctx)
	var lag *ipctopic.LaggedError
	if errors.As(err, &lag) {
		fmt.Println("missed", lag.Missed)
	}
	msg, _ := s.Recv(ctx) // the oldest message still held
	fmt.Println(string(msg))
	// Output:
	// missed 6
	// 6
}
