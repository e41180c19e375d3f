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
		procs, _ := strconv.Atoi(args[2])
		var vs [3]*Int64
		for i, name := range adderNames(args[0]) {
			v, err := OpenInt64(name)
			if err != nil {
				return err
			}
			defer v.Close()
			vs[i] = v
		}
		return adder(vs, procs, n)
	})
	helperproc.Register("truncate", func(args []string) error {
		return os.Truncate(Path(args[0]), 0)
	})
	helperproc.Run(m)
}
