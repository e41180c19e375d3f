package main

// The packages whose objects ipcs reads: each registers the inspector of
// its kinds with shm when it is linked in (see shm's "Inspection"). A
// package that adds a kind adds its line here.
import (
	_ "github.com/ipckit/ipckit/ipcmap"    // KindMap
	_ "github.com/ipckit/ipckit/ipcpipe"   // KindPipe
	_ "github.com/ipckit/ipckit/ipcqueue"  // KindQueue, KindTasks
	_ "github.com/ipckit/ipckit/ipctopic"  // KindTopic
	_ "github.com/ipckit/ipckit/semaphore" // KindMutex, KindSemaphore, KindEvent, KindBarrier, KindCondition, KindLocked
)
