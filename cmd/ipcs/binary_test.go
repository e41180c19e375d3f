//go:build linux

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ipckit/ipckit/ipcmap"
	"github.com/ipckit/ipckit/ipcpipe"
	"github.com/ipckit/ipckit/ipcqueue"
	"github.com/ipckit/ipckit/ipctopic"
	"github.com/ipckit/ipckit/semaphore"
	"github.com/ipckit/ipckit/shm"
)

// The ipcs binary itself (not this test binary, which links in more)
// reads the state of every kind of object: each kind's package registers
// its inspector only if the binary links it in (kinds.go).
func TestBinaryInspectsEveryKind(t *testing.T) {
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build the binary")
	}
	bin := filepath.Join(t.TempDir(), "ipcs")
	if out, err := exec.Command(gotool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	made := map[string]shm.Kind{}
	add := func(k shm.Kind, mk func(name string) (interface{ Close() error }, error)) {
		n := name(t)
		o, err := mk(n)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { o.Close() })
		made[n] = k
	}
	add(shm.KindBytes, func(n string) (interface{ Close() error }, error) { return shm.Create(n, 8, nil) })
	add(shm.KindInt64, func(n string) (interface{ Close() error }, error) { return shm.CreateInt64(n, nil) })
	add(shm.KindFloat64Array, func(n string) (interface{ Close() error }, error) { return shm.CreateArray[float64](n, 3, nil) })
	add(shm.KindCatalog, func(n string) (interface{ Close() error }, error) { return shm.CreateCatalog(n, 64, nil) })
	add(shm.KindQueue, func(n string) (interface{ Close() error }, error) { return ipcqueue.Create(n, 64, nil) })
	add(shm.KindTopic, func(n string) (interface{ Close() error }, error) { return ipctopic.Create(n, nil) })
	add(shm.KindMutex, func(n string) (interface{ Close() error }, error) { return semaphore.CreateMutex(n, nil) })
	add(shm.KindSemaphore, func(n string) (interface{ Close() error }, error) { return semaphore.CreateSemaphore(n, 2, nil) })
	add(shm.KindEvent, func(n string) (interface{ Close() error }, error) { return semaphore.CreateEvent(n, nil) })
	add(shm.KindMap, func(n string) (interface{ Close() error }, error) { return ipcmap.Create(n, nil) })
	add(shm.KindBarrier, func(n string) (interface{ Close() error }, error) { return semaphore.CreateBarrier(n, 2, nil) })
	add(shm.KindPipe, func(n string) (interface{ Close() error }, error) {
		a, b, err := ipcpipe.Create(n, true, nil)
		if err != nil {
			return nil, err
		}
		b.Close()
		return a, nil
	})
	jq := name(t)
	t.Cleanup(func() { os.Remove(shm.Path(jq + ".tasks")) })
	j, err := ipcqueue.CreateJoinable(jq, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	made[jq+".tasks"] = shm.KindTasks
	add(shm.KindCondition, func(n string) (interface{ Close() error }, error) { return semaphore.CreateCondition(n, nil) })
	add(shm.KindLocked, func(n string) (interface{ Close() error }, error) { return semaphore.CreateLocked[uint16](n, 3, nil) })
	add(shm.KindInt8, func(n string) (interface{ Close() error }, error) { return shm.CreateInt8(n, nil) })
	add(shm.KindUint8, func(n string) (interface{ Close() error }, error) { return shm.CreateUint8(n, nil) })
	add(shm.KindInt16, func(n string) (interface{ Close() error }, error) { return shm.CreateInt16(n, nil) })
	add(shm.KindUint16, func(n string) (interface{ Close() error }, error) { return shm.CreateUint16(n, nil) })
	add(shm.KindUint32, func(n string) (interface{ Close() error }, error) { return shm.CreateUint32(n, nil) })
	add(shm.KindFloat32, func(n string) (interface{ Close() error }, error) { return shm.CreateFloat32(n, nil) })
	add(shm.KindBool, func(n string) (interface{ Close() error }, error) { return shm.CreateBool(n, nil) })
	add(shm.KindInt8Array, func(n string) (interface{ Close() error }, error) { return shm.CreateArray[int8](n, 3, nil) })
	add(shm.KindUint8Array, func(n string) (interface{ Close() error }, error) { return shm.CreateArray[uint8](n, 3, nil) })
	add(shm.KindInt16Array, func(n string) (interface{ Close() error }, error) { return shm.CreateArray[int16](n, 3, nil) })
	add(shm.KindUint16Array, func(n string) (interface{ Close() error }, error) { return shm.CreateArray[uint16](n, 3, nil) })
	add(shm.KindUint32Array, func(n string) (interface{ Close() error }, error) { return shm.CreateArray[uint32](n, 3, nil) })
	add(shm.KindFloat32Array, func(n string) (interface{ Close() error }, error) { return shm.CreateArray[float32](n, 3, nil) })
	for n, k := range made {
		out, err := exec.Command(bin, "inspect", "-json", n).Output()
		if err != nil {
			t.Errorf("ipcs inspect %s (%v): %v", n, k, err)
			continue
		}
		var got struct {
			Kind  string
			State map[string]any
		}
		if err := json.Unmarshal(out, &got); err != nil || got.Kind != k.String() || got.State == nil {
			t.Errorf("ipcs inspect -json of a %v: %s (%v)", k, out, err)
		}
	}
}
