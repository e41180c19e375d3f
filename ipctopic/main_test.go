//go:build linux

package ipctopic

import (
	"testing"

	"github.com/ipckit/ipckit/internal/helperproc"
)

func TestMain(m *testing.M) {
	registerHelpers()
	helperproc.Run(m)
}
