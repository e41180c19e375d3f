//go:build !linux

package ipcqueue

import "errors"

// haveMembarrier reports false: pinned calls fence their entry store
// (guard.go).
func haveMembarrier() bool { return false }

// membarrier is never called where haveMembarrier is false.
func membarrier() error { return errors.ErrUnsupported }
