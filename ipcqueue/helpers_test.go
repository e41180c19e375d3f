//go:build linux

package ipcqueue

func registerHelpers() {}
