//go:build !linux

package spawn

import "errors"

func checkFD(fd int, what string, fifo bool) error { return errors.ErrUnsupported }

func closeStray(first int) error { return errors.ErrUnsupported }
