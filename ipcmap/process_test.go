//go:build linux

package ipcmap

func registerProcessHelpers() {}
