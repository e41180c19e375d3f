package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipckit/ipckit/ipcmap"
	"github.com/ipckit/ipckit/shm"
	"github.com/ipckit/ipckit/spawn"
)

// The map figures: Get and Set of 16-byte keys and 64-byte values, timed in
// this process while a second one (a child for ipcmap, a goroutine for the
// sync.Map peer) does the same operation on the same keys without pause.
// Both sides copy a value out on Get (a caller of either gets bytes of its
// own) and store a value the caller does not touch again on Set.

const (
	mapKeys    = 1024
	mapValSize = 64

	// The load's states, in mapArg.State.
	mapRunning  = 1
	mapStopping = 2
)

// mapKey returns key i: 16 bytes.
func mapKey(i int) []byte { return fmt.Appendf(nil, "key-%012d", i%mapKeys) }

// mapKeyList returns the keys and a 64-byte value.
func mapKeyList() ([][]byte, []byte) {
	keys := make([][]byte, mapKeys)
	for i := range keys {
		keys[i] = mapKey(i)
	}
	return keys, make([]byte, mapValSize)
}

// mapArg asks a child to Get (or Set) the keys of M in a loop while State
// is mapRunning; the child sets it to mapRunning once it starts.
type mapArg struct {
	M     *ipcmap.Map
	State *shm.Int64
	Set   bool
}

var mapLoad = spawn.Register("ipcbench.mapload", func(ctx context.Context, a mapArg) error {
	defer a.M.Close()
	defer a.State.Close()
	keys, val := mapKeyList()
	a.State.Store(mapRunning)
	var buf []byte
	for i := 0; a.State.Load() == mapRunning; i++ {
		var err error
		if a.Set {
			err = a.M.Set(ctx, keys[i%mapKeys], val)
		} else {
			buf, _, err = a.M.AppendValue(buf[:0], keys[i%mapKeys])
		}
		if err != nil {
			return err
		}
	}
	return nil
})

// mapOps times n operations on the keys: Get (copying the value into a
// buffer) or Set.
func mapOps(cfg *config, get func(buf, key []byte) ([]byte, error), set func(key, val []byte) error, isSet bool) (float64, error) {
	keys, val := mapKeyList()
	var buf []byte
	return timeOps(cfg, func(n int) error {
		for i := range n {
			k := keys[(i*7)%mapKeys]
			var err error
			if isSet {
				err = set(k, val)
			} else {
				buf, err = get(buf[:0], k)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// ipcmapSide times ipcmap beside a child doing the same operation.
func ipcmapSide(isSet bool) side {
	return side{"ipcmap", func(cfg *config) (float64, error) {
		m, err := ipcmap.New(&ipcmap.Options{Entries: mapKeys, Bytes: mapKeys * 128})
		if err != nil {
			return 0, err
		}
		defer m.Close()
		ctx := context.Background()
		keys, val := mapKeyList()
		for _, k := range keys {
			if err := m.Set(ctx, k, val); err != nil {
				return 0, err
			}
		}
		state, err := shm.NewInt64()
		if err != nil {
			return 0, err
		}
		defer state.Close()
		p, err := spawn.Start(ctx, mapLoad, mapArg{M: m, State: state, Set: isSet}, nil)
		if err != nil {
			return 0, err
		}
		for deadline := time.Now().Add(10 * time.Second); state.Load() != mapRunning; {
			if time.Now().After(deadline) {
				p.Kill()
				p.Wait()
				return 0, fmt.Errorf("the child did not start within 10 s")
			}
			time.Sleep(time.Millisecond)
		}
		ns, err := mapOps(cfg,
			func(buf, key []byte) ([]byte, error) { b, _, err := m.AppendValue(buf, key); return b, err },
			func(key, v []byte) error { return m.Set(ctx, key, v) }, isSet)
		state.Store(mapStopping)
		if werr := p.Wait(); err == nil {
			err = werr
		}
		return ns, err
	}}
}

// syncMapSide times sync.Map beside a goroutine doing the same operation.
func syncMapSide(isSet bool) side {
	return side{"sync_map", func(cfg *config) (float64, error) {
		var m sync.Map
		keys, val := mapKeyList()
		for _, k := range keys {
			m.Store(string(k), append([]byte(nil), val...))
		}
		get := func(buf, key []byte) ([]byte, error) {
			if v, ok := m.Load(string(key)); ok {
				buf = append(buf, v.([]byte)...)
			}
			return buf, nil
		}
		set := func(key, v []byte) error { m.Store(string(key), v); return nil }
		var state atomic.Int64
		var wg sync.WaitGroup
		wg.Go(func() {
			var buf []byte
			state.Store(mapRunning)
			for i := 0; state.Load() == mapRunning; i++ {
				if isSet {
					set(keys[i%mapKeys], val)
				} else {
					buf, _ = get(buf[:0], keys[i%mapKeys])
				}
			}
		})
		for state.Load() != mapRunning {
			runtime.Gosched()
		}
		ns, err := mapOps(cfg, get, set, isSet)
		state.Store(mapStopping)
		wg.Wait()
		return ns, err
	}}
}

func mapMetrics() []metric {
	return []metric{
		{name: "map_get_ns", unit: "ns/op", ours: ipcmapSide(false), peers: []side{syncMapSide(false)}},
		{name: "map_set_ns", unit: "ns/op", ours: ipcmapSide(true), peers: []side{syncMapSide(true)}},
	}
}
