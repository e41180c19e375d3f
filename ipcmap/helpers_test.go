//go:build linux

package ipcmap

func registerHelpers() {}
