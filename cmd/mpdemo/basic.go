package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/ipckit/ipckit/spawn"
)

// say runs in a child process. Registering it at package level lets the
// child, which re-runs this binary, find it by name.
var say = spawn.Register("mpdemo.say", func(_ context.Context, text string) error {
	fmt.Println(text)
	return nil
})

// basic starts a goroutine (Python's threading.Thread) and a child process
// (multiprocessing.Process) side by side and waits for both (join).
func basic(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { fmt.Println("tttt") })        // t1.start()
	p, err := spawn.Start(ctx, say, "pppp", nil) // p1.start()
	if err != nil {
		return err
	}
	wg.Wait()       // t1.join()
	return p.Wait() // p1.join()
}
