package shm

import (
	"errors"
	"os"
	"testing"
)

// TestPrivateInit: fill runs on the new segment before it is returned, and
// a failing fill returns its error and closes the segment.
func TestPrivateInit(t *testing.T) {
	for name, mk := range map[string]func(int, func(*Segment) error) (*Segment, error){
		"anonymous": KindBytes.CreateAnonymousInit,
		"heap":      KindBytes.NewHeapInit,
	} {
		t.Run(name, func(t *testing.T) {
			seg, err := mk(64, func(s *Segment) error { s.Bytes()[0] = 7; return nil })
			if err != nil {
				t.Fatal(err)
			}
			if seg.Bytes()[0] != 7 || seg.Kind() != KindBytes {
				t.Fatalf("segment after fill: byte %d, kind %v", seg.Bytes()[0], seg.Kind())
			}
			seg.Close()
			boom := errors.New("boom")
			var filled *Segment
			if _, err := mk(64, func(s *Segment) error { filled = s; return boom }); err != boom {
				t.Fatalf("failing fill: %v, want its error as it is", err)
			}
			if err := filled.Check(); !errors.Is(err, os.ErrClosed) {
				t.Fatalf("the segment of a failing fill: Check = %v, want os.ErrClosed", err)
			}
		})
	}
}
