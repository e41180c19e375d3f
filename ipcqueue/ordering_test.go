//go:build linux

package ipcqueue

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/internal/opentest"
)

// An Open racing Create finds the queue whole or finds no name, never a
// control block not yet written. Before Create wrote the control block in
// the unnamed segment (shm.Kind.CreateInit), this saw "bad magic 0x0"
// (ErrCorrupt): 72 in 20,000 opens.
func TestOpenRacingCreate(t *testing.T) {
	opentest.RacingOpens(t, 1000, helperproc.Name(t),
		func(name string) (func() error, error) {
			q, err := Create(name, 64, nil)
			if err != nil {
				return nil, err
			}
			return q.Close, nil
		},
		func(name string) (func() error, error) {
			q, err := Open(name)
			if err != nil {
				return nil, err
			}
			if q.Capacity() != 64-hdrSize {
				q.Close()
				return nil, fmt.Errorf("opened a queue of capacity %d, want %d", q.Capacity(), 64-hdrSize)
			}
			return q.Close, nil
		}, Remove)
}

// Every store to a word that another process loads is atomic (sync/atomic
// or release.Store64): no plain store through a pointer cast like
// *(*uint64)(p) = v, which on a weak memory model (arm64) is not ordered
// by itself and which the race detector cannot see on a mapping. The
// payload bytes (copy) are the only plain stores into the ring, published
// by the commit; see "Ordering" in layout.go.
func TestNoPlainWordStores(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			as, ok := n.(*ast.AssignStmt)
			if !ok {
				return true
			}
			for _, lhs := range as.Lhs {
				if plainWordStore(lhs) {
					t.Errorf("%s: plain store through a pointer cast; use sync/atomic or release.Store64", fset.Position(lhs.Pos()))
				}
			}
			return true
		})
	}
}

// plainWordStore reports whether e is *(*T)(x) for an integer type T.
func plainWordStore(e ast.Expr) bool {
	star, ok := e.(*ast.StarExpr)
	if !ok {
		return false
	}
	call, ok := ast.Unparen(star.X).(*ast.CallExpr)
	if !ok || len(call.Args) != 1 {
		return false
	}
	ptr, ok := ast.Unparen(call.Fun).(*ast.StarExpr)
	if !ok {
		return false
	}
	id, ok := ptr.X.(*ast.Ident)
	if !ok {
		return false
	}
	switch id.Name {
	case "uint64", "int64", "uint32", "int32", "uint16", "int16", "uint8", "int8", "uintptr", "uint", "int":
		return true
	}
	return false
}
