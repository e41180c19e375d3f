//go:build !unix

package semaphore

import (
	"errors"
	"os"
)

const (
	lockEx = 2
	lockSh = 1
)

func openLockFile(string) (*os.File, []byte, error) { return nil, nil, errors.ErrUnsupported }

func unmapRecord([]byte) error { return nil }

func flockTry(int, int) (bool, error) { return false, errors.ErrUnsupported }

func flockUnlock(int) error { return errors.ErrUnsupported }
