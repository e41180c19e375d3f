package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// describeMachine returns the lines that head every run: what was measured,
// on what.
func describeMachine() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# ipcbench %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "# cpu: %s, %d cores (GOMAXPROCS %d)\n", cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Fprintf(&b, "# virtualisation: %s\n", virtualisation())
	fmt.Fprintf(&b, "# kernel: %s, %s %s/%s\n", strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return b.String()
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func cpuModel() string {
	s := bufio.NewScanner(strings.NewReader(readFile("/proc/cpuinfo")))
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// virtualisation names the container and hypervisor the run is under, from
// systemd-detect-virt if the machine has it, the CPU's hypervisor flag and DMI.
func virtualisation() string {
	var found []string
	if out, err := exec.Command("systemd-detect-virt", "--container").Output(); err == nil {
		found = append(found, "container "+strings.TrimSpace(string(out)))
	}
	if bytes.Contains([]byte(readFile("/proc/cpuinfo")), []byte(" hypervisor")) {
		vm := "hypervisor"
		if v := strings.TrimSpace(readFile("/sys/class/dmi/id/sys_vendor")); v != "" {
			vm += " (" + v + ")"
		}
		found = append(found, vm)
	}
	if len(found) == 0 {
		return "none detected"
	}
	return strings.Join(found, ", ")
}
