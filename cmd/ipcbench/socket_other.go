//go:build !linux

package main

import (
	"errors"
	"os"
)

// socketPair is not supported on this platform.
func socketPair() (*os.File, *os.File, error) { return nil, nil, errors.ErrUnsupported }
