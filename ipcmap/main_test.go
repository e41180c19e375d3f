//go:build linux

package ipcmap

import (
	"reflect"
	"testing"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/spawn"
)

func TestMain(m *testing.M) {
	registerHelpers()
	spawn.Main()
	helperproc.Run(m)
}

func reflectType(v any) reflect.Type { return reflect.TypeOf(v) }
