//go:build linux

package shm

import (
	"os"
	"strconv"
	"testing"

	"github.com/ipckit/ipckit/internal/helperproc"
)

func TestMain(m *testing.M) {
	helperproc.Register("add", func(args []string) error {
		n, _ := strconv.Atoi(args[1])
		v, err := OpenInt64(args[0])
		if err != nil {
			return err
		}
		defer v.Close()
		for range n {
			v.Add(1)
		}
		return nil
	})
	helperproc.Register("truncate", func(args []string) error {
		return os.Truncate(Path(args[0]), 0)
	})
	helperproc.Run(m)
}
