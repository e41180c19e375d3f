package main

import (
	"sync/atomic"

	"github.com/ipckit/ipckit/shm"
)

func valueMetrics() []metric {
	return []metric{{
		name: "value_add_ns", unit: "ns/op",
		ours: side{"shm.Int64", func(cfg *config) (float64, error) {
			v, err := shm.NewInt64()
			if err != nil {
				return 0, err
			}
			defer v.Close()
			return timeOps(cfg, func(n int) error {
				for range n {
					v.Add(1)
				}
				return nil
			})
		}},
		peers: []side{{"atomic_int64", func(cfg *config) (float64, error) {
			var v atomic.Int64
			return timeOps(cfg, func(n int) error {
				for range n {
					v.Add(1)
				}
				return nil
			})
		}}},
	}}
}
