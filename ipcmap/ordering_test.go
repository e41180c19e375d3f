//go:build linux

package ipcmap

import (
	"fmt"
	"testing"

	"github.com/ipckit/ipckit/internal/helperproc"
	"github.com/ipckit/ipckit/internal/opentest"
)

// An Open racing Create finds the map whole or finds no name, never a
// control block not yet written.
func TestOpenRacingCreate(t *testing.T) {
	opentest.RacingOpens(t, 1000, helperproc.Name(t),
		func(name string) (func() error, error) {
			m, err := Create(name, &Options{Entries: 8, Bytes: 256})
			if err != nil {
				return nil, err
			}
			return m.Close, nil
		},
		func(name string) (func() error, error) {
			m, err := Open(name)
			if err != nil {
				return nil, err
			}
			if st, err := m.Stats(); err != nil || st.MaxEntries != 8 || st.Bytes != 256 {
				m.Close()
				return nil, fmt.Errorf("opened a map with %+v, %v; want 8 entries and 256 bytes", st, err)
			}
			return m.Close, nil
		}, Remove)
}
