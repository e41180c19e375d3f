package ipcqueue

import (
	"os"
	"reflect"

	"github.com/ipckit/ipckit/internal/handoff"
)

// The handle types of this package, for internal/handoff: spawn passes the
// file of a queue's segment (shm's handle) to a child that gets the queue in
// its argument. Typed[T] is claimed for every T at once: a resolver sees
// each instantiation as a type of this package whose pointer has the
// Queue method.
func init() {
	pkg := reflect.TypeFor[Queue]().PkgPath()
	typed := reflect.TypeFor[interface{ Queue() *Queue }]()
	handoff.Register(
		handoff.For(func(q *Queue) []*os.File { return handoff.Files(q.Segment()) }),
		func(t reflect.Type) func(any) []*os.File {
			if t.Kind() != reflect.Struct || t.PkgPath() != pkg || !reflect.PointerTo(t).Implements(typed) {
				return nil
			}
			return func(p any) []*os.File { return handoff.Files(p.(interface{ Queue() *Queue }).Queue()) }
		},
	)
}
