package handoff

import (
	"bytes"
	"runtime"
	"strconv"
)

// goid returns the calling goroutine's id, read from its stack header
// ("goroutine 12 [running]:"). Collect uses it so that only the goroutine
// encoding a child's argument adds files to it; this runs once per
// anonymous object passed, never on a hot path.
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}
