//go:build unix

package semaphore

import (
	"fmt"
	"os"
	"syscall"

	"github.com/ipckit/ipckit/internal/shmfile"
)

const (
	lockEx = syscall.LOCK_EX
	lockSh = syscall.LOCK_SH
)

// openLockFile opens (or creates) a lock file without following a symbolic
// link, gives it its record's size if it is new, and maps the record.
func openLockFile(path string) (*os.File, []byte, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file, so not a lock file: %w", os.ErrInvalid)
	}
	if err == nil && st.Size() == 0 {
		err = f.Truncate(fileRecSize)
	} else if err == nil && st.Size() != fileRecSize {
		err = fmt.Errorf("%d bytes, want %d, so not a lock file: %w", st.Size(), fileRecSize, os.ErrInvalid)
	}
	var rec []byte
	if err == nil {
		rec, err = shmfile.Map(f, fileRecSize)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, rec, nil
}

func unmapRecord(rec []byte) error { return shmfile.Unmap(rec) }

func flockTry(fd, how int) (bool, error) {
	for {
		err := syscall.Flock(fd, how|syscall.LOCK_NB)
		switch err {
		case nil:
			return true, nil
		case syscall.EWOULDBLOCK:
			return false, nil
		case syscall.EINTR:
			continue
		}
		return false, err
	}
}

func flockUnlock(fd int) error { return syscall.Flock(fd, syscall.LOCK_UN) }
