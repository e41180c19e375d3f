package main

import (
	"fmt"
	"io"
	"reflect"
	"strings"
)

// Rendering a report
//
// Each package's inspector returns a struct of its own (ipcqueue's
// QueueState, semaphore's MutexState, ...), which ipcs prints without
// knowing it: JSON with encoding/json, text with render, which walks the
// exported fields. A value with a String method prints as that; a struct
// prints as its fields, indented; an embedded struct's fields print as
// the outer one's; a slice prints its elements, a line each when they are
// structs. So a package that adds a kind, or a field, needs nothing in
// cmd/ipcs.

// render writes v's fields to w, a line each, after indent.
func render(w io.Writer, v any, indent string) {
	renderValue(w, reflect.ValueOf(v), indent)
}

var stringer = reflect.TypeFor[fmt.Stringer]()

func renderValue(w io.Writer, v reflect.Value, indent string) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct || v.Type().Implements(stringer) {
		fmt.Fprintf(w, "%s%s\n", indent, scalar(v))
		return
	}
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Anonymous && !f.Type.Implements(stringer) && fv.Kind() == reflect.Struct {
			renderValue(w, fv, indent)
			continue
		}
		switch {
		case isStruct(fv):
			fmt.Fprintf(w, "%s%s:\n", indent, f.Name)
			renderValue(w, fv, indent+"  ")
		case fv.Kind() == reflect.Slice && fv.Len() > 0 && isStruct(fv.Index(0)):
			fmt.Fprintf(w, "%s%s:\n", indent, f.Name)
			for j := range fv.Len() {
				fmt.Fprintf(w, "%s  - %s\n", indent, inline(fv.Index(j)))
			}
		default:
			fmt.Fprintf(w, "%s%s: %s\n", indent, f.Name, scalar(fv))
		}
	}
}

// isStruct reports whether v is a struct (or a non-nil pointer to one)
// without a String method: one to print field by field.
func isStruct(v reflect.Value) bool {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return false
		}
		v = v.Elem()
	}
	return v.Kind() == reflect.Struct && !v.Type().Implements(stringer)
}

// scalar formats a value on one line: its String method, a nil pointer as
// "none", a slice as its elements separated by commas.
func scalar(v reflect.Value) string {
	if v.Kind() == reflect.Pointer && v.IsNil() {
		return "none"
	}
	if v.Type().Implements(stringer) {
		return v.Interface().(fmt.Stringer).String()
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		return scalar(v.Elem())
	case reflect.Slice:
		if v.Len() == 0 {
			return "none"
		}
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = scalar(v.Index(i))
		}
		return strings.Join(parts, ", ")
	case reflect.Struct:
		return inline(v)
	}
	return fmt.Sprint(v.Interface())
}

// inline formats a struct on one line, as Field=value pairs.
func inline(v reflect.Value) string {
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Type().Implements(stringer) {
		return v.Interface().(fmt.Stringer).String()
	}
	var parts []string
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		if !f.IsExported() || (fv.Kind() == reflect.Pointer && fv.IsNil()) {
			continue
		}
		parts = append(parts, f.Name+"="+scalar(fv))
	}
	return strings.Join(parts, " ")
}
