module github.com/ipckit/ipckit

go 1.26.0

require (
	github.com/edsrzf/mmap-go v1.2.0
	go.uber.org/goleak v1.3.0
	golang.org/x/sys v0.50.0
)

require github.com/gofrs/flock v0.13.2

require github.com/anishathalye/porcupine v1.3.1 // indirect
