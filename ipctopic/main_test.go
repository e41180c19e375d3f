//go:build linux

package ipctopic

import (
	"testing"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/spawn"
)

func TestMain(m *testing.M) {
	spawn.Main() // in a child started by spawn: run its function and exit
	registerHelpers()
	helperproc.Run(m)
}
