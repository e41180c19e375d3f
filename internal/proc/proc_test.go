//go:build linux

package proc

import (
	"os"
	"os/exec"
	"testing"
)

func TestAlive(t *testing.T) {
	self := Self()
	if int(self.Pid) != os.Getpid() || self.Start == 0 {
		t.Fatalf("Self() = %+v", self)
	}
	if !Alive(self) {
		t.Fatal("this process is not alive")
	}
	if Alive(ID{Pid: self.Pid, Start: self.Start + 1}) {
		t.Fatal("a different start time (a reused pid) counts as alive")
	}
	if Alive(ID{}) {
		t.Fatal("the zero ID is alive")
	}

	// A child that stays alive until killed, so Lookup finds it running.
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	id, err := Lookup(cmd.Process.Pid)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	if !Alive(id) {
		t.Error("a running child is not alive")
	}
	cmd.Process.Kill()
	cmd.Wait()
	if Alive(id) {
		t.Fatal("a killed and reaped child is alive")
	}
}

func TestZombieIsDead(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	id := ID{Pid: uint32(cmd.Process.Pid)}
	// Until it is reaped the child is a zombie; wait for it to exit.
	for i := 0; Alive(id); i++ {
		if i > 1e6 {
			t.Fatal("an exited, unreaped child stays alive")
		}
	}
}
