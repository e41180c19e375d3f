//go:build linux

package ipcpipe

import (
	"testing"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/spawn"
)

func TestMain(m *testing.M) {
	spawn.Main()
	helperproc.Run(m)
}
