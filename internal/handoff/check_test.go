package handoff

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

type withChan struct{ Done chan int }

type mixed struct {
	N    int
	Next *mixed
	Fn   func()
}

type hidden struct{ a, b int }

// The tests look at these types only; the fields are used here so that
// linters see them used.
var _ = hidden{a: 1, b: 2}
var _ = fine{skip: nil}

type deep struct {
	Jobs []map[string]*withChan
}

type fine struct {
	A    int
	B    []string
	M    map[string]*fine
	T    time.Time // has its own encoding: not looked into
	Any  any
	skip chan int // unexported: gob ignores it, and so do we
}

func TestCheckType(t *testing.T) {
	for _, c := range []struct {
		t    reflect.Type
		want []string // substrings of the error; nil: no error
	}{
		{reflect.TypeFor[withChan](), []string{"field handoff.withChan.Done", "channel", "chan int"}},
		{reflect.TypeFor[*mixed](), []string{"field handoff.mixed.Fn", "func"}},
		{reflect.TypeFor[hidden](), []string{"handoff.hidden", "no exported fields", "a, b"}},
		{reflect.TypeFor[deep](), []string{"field handoff.deep.Jobs.Done", "channel"}},
		{reflect.TypeFor[chan int](), []string{"type chan int", "channel"}},
		{reflect.TypeFor[map[withChan]int](), []string{"withChan.Done", "channel"}},
		{reflect.TypeFor[fine](), nil},
		{reflect.TypeFor[struct{}](), nil},
		{reflect.TypeFor[[]byte](), nil},
	} {
		err := CheckType(c.t)
		if c.want == nil {
			if err != nil {
				t.Errorf("CheckType(%v) = %v, want nil", c.t, err)
			}
			continue
		}
		if !errors.Is(err, ErrCannotCross) {
			t.Errorf("CheckType(%v) = %v, want ErrCannotCross", c.t, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("CheckType(%v) = %q, want it to say %q", c.t, err, w)
			}
		}
	}
}
