package spawn

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestTruncateKeepsRunes: a status text cut to maxField bytes is still
// valid UTF-8 when a multi-byte rune straddles the limit.
func TestTruncateKeepsRunes(t *testing.T) {
	for pad := range 4 {
		s := strings.Repeat("a", maxField-pad) + strings.Repeat("世", 10) // 3 bytes a rune
		got := truncate(s)
		if len(got) > maxField || !utf8.ValidString(got) {
			t.Fatalf("pad %d: %d bytes, valid UTF-8 %v", pad, len(got), utf8.ValidString(got))
		}
		if len(got) < maxField-2 {
			t.Fatalf("pad %d: cut to %d bytes, more than one rune short of %d", pad, len(got), maxField)
		}
	}
	if s := "short"; truncate(s) != s {
		t.Fatal("a short text was changed")
	}
}
