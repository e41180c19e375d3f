package main

import (
	"context"
	"os"
	"os/exec"

	"github.com/ipckit/ipckit/spawn"
)

func spawnMetrics() []metric {
	ctx := context.Background()
	return []metric{{
		name: "spawn_start_wait_ms", unit: "ms",
		ours: side{"spawn.Run", func(cfg *config) (float64, error) {
			ns, err := timeOps(cfg, func(n int) error {
				for range n {
					if err := spawnRun(ctx); err != nil {
						return err
					}
				}
				return nil
			})
			return ns / 1e6, err
		}},
		peers: []side{{"exec_reexec", func(cfg *config) (float64, error) {
			exe, err := os.Executable()
			if err != nil {
				return 0, err
			}
			ns, err := timeOps(cfg, func(n int) error {
				for range n {
					cmd := exec.Command(exe)
					cmd.Env = append(os.Environ(), exitEnv+"=1")
					if err := cmd.Run(); err != nil {
						return err
					}
				}
				return nil
			})
			return ns / 1e6, err
		}}},
	}}
}

func spawnRun(ctx context.Context) error { return spawn.Run(ctx, nothing, struct{}{}, nil) }
