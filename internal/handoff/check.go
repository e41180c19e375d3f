package handoff

import (
	"encoding"
	"encoding/gob"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// ErrCannotCross is returned by [CheckType] for a type that cannot cross
// to another process in a gob argument.
var ErrCannotCross = errors.New("handoff: type cannot cross to another process")

var (
	gobEncoder    = reflect.TypeFor[gob.GobEncoder]()
	binMarshaler  = reflect.TypeFor[encoding.BinaryMarshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)

// CheckType reports, before anything is encoded, why no value of type t
// could arrive whole in another process through encoding/gob, naming the
// field at fault and its kind:
//
//   - a channel, a function or an unsafe.Pointer, anywhere gob would look
//     (gob refuses one at top level, and silently drops an exported struct
//     field of such a type, so that it arrives as nil);
//   - a struct that has fields but no exported one (gob sends only
//     exported fields).
//
// It looks where gob looks: exported struct fields, through pointers,
// slices, arrays and map keys and values; not inside a type with its own
// encoding (GobEncoder, BinaryMarshaler, TextMarshaler, as ipckit's shared
// objects are), nor at what an interface may hold. The error wraps
// [ErrCannotCross].
func CheckType(t reflect.Type) error {
	return checkType(t, "type "+t.String(), map[reflect.Type]bool{})
}

// checkType checks t, met at path ("type T" for the root, "field
// T.A.B" below it).
func checkType(t reflect.Type, path string, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
	for _, i := range []reflect.Type{gobEncoder, binMarshaler, textMarshaler} {
		if t.Implements(i) || reflect.PointerTo(t).Implements(i) {
			return nil
		}
	}
	switch t.Kind() {
	case reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return fmt.Errorf("%w: %s is a %s (%v), which cannot be sent to another process", ErrCannotCross, path, kindName(t.Kind()), t)
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return checkType(t.Elem(), path, seen)
	case reflect.Map:
		if err := checkType(t.Key(), path, seen); err != nil {
			return err
		}
		return checkType(t.Elem(), path, seen)
	case reflect.Struct:
		var unexported []string
		exported := 0
		for k := range t.NumField() {
			f := t.Field(k)
			if !f.IsExported() {
				unexported = append(unexported, f.Name)
				continue
			}
			exported++
			if err := checkType(f.Type, fieldPath(path, t, f.Name), seen); err != nil {
				return err
			}
		}
		if exported == 0 && len(unexported) > 0 {
			return fmt.Errorf("%w: %s (%v) has no exported fields, and encoding/gob sends only exported ones (unexported: %s)",
				ErrCannotCross, path, t, strings.Join(unexported, ", "))
		}
	}
	return nil
}

// fieldPath names field name of struct type t, met at path.
func fieldPath(path string, t reflect.Type, name string) string {
	if strings.HasPrefix(path, "type ") {
		return "field " + t.String() + "." + name
	}
	return path + "." + name
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.Chan:
		return "channel"
	case reflect.Func:
		return "func"
	}
	return "unsafe.Pointer"
}
