//go:build linux

package liveness_test

import (
	"fmt"

	"github.com/ipckit/ipckit/internal/liveness"
)

// A process names itself by its token; any process that can open the
// registry, in any PID namespace, can ask whether it still lives.
func ExampleCheck() {
	me, err := liveness.Self()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(me.Valid(), liveness.Check(me))
	// Output: true alive
}
