//go:build !linux

package liveness

import (
	"errors"
	"fmt"
)

// Path returns the registry file of uid (none outside Linux).
func Path(uid uint32) string { return "" }

// Self fails outside Linux: there are no OFD locks to claim a token with.
func Self() (Token, error) {
	return 0, fmt.Errorf("%w: %w", ErrRegistry, errors.ErrUnsupported)
}

// Check knows nothing outside Linux.
func Check(t Token) State { return Unknown }
