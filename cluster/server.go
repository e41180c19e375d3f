package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ServerOptions configures an embedded server. A nil *ServerOptions means
// the defaults, and so does the zero value of each field.
type ServerOptions struct {
	// Dir is JetStream's store directory. "" means a new temporary
	// directory, removed by [Server.Shutdown]; a directory given here is
	// kept, so that a server started again on it finds every stored task.
	Dir string
	// Port is the client port on 127.0.0.1; 0 means any free port.
	Port int
}

// Server is an in-process nats-server with JetStream, listening on
// loopback: the default engine when no URL is given, and the tests'.
type Server struct {
	ns     *server.Server
	dir    string
	ownDir bool
}

// StartServer starts an embedded nats-server with JetStream (file store in
// opts.Dir) on 127.0.0.1 and waits until it takes connections.
func StartServer(opts *ServerOptions) (*Server, error) {
	var o ServerOptions
	if opts != nil {
		o = *opts
	}
	s := &Server{dir: o.Dir}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "ipckit-nats-")
		if err != nil {
			return nil, fmt.Errorf("cluster: embedded server: %w", err)
		}
		s.dir, s.ownDir = d, true
	}
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  s.dir,
		NoSigs:    true,
		NoLog:     true,
	})
	if err != nil {
		s.removeDir()
		return nil, fmt.Errorf("cluster: embedded server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		s.removeDir()
		return nil, errors.New("cluster: embedded server did not start within 10s")
	}
	s.ns = ns
	return s, nil
}

// URL returns the client URL, nats://127.0.0.1:port.
func (s *Server) URL() string { return s.ns.ClientURL() }

// Port returns the client port, to start a server again on it.
func (s *Server) Port() int { return s.ns.Addr().(*net.TCPAddr).Port }

// Dir returns the JetStream store directory.
func (s *Server) Dir() string { return s.dir }

// Shutdown stops the server, waits for it, and removes its store directory
// if StartServer made it.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	s.removeDir()
}

func (s *Server) removeDir() {
	if s.ownDir {
		os.RemoveAll(s.dir)
	}
}

// Connect connects to the NATS server at url, reconnecting for ever after
// a loss; with url "" it first starts an embedded server ([StartServer],
// in a temporary directory). stop closes the connection and stops the
// embedded server, if any.
func Connect(url string, opts ...nats.Option) (nc *nats.Conn, stop func(), err error) {
	var s *Server
	if url == "" {
		if s, err = StartServer(nil); err != nil {
			return nil, nil, err
		}
		url = s.URL()
	}
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}, opts...)
	nc, err = nats.Connect(url, opts...)
	if err != nil {
		if s != nil {
			s.Shutdown()
		}
		return nil, nil, fmt.Errorf("cluster: connect to %s: %w", url, err)
	}
	return nc, func() {
		nc.Close()
		if s != nil {
			s.Shutdown()
		}
	}, nil
}

// Storage chooses where JetStream keeps the streams.
type Storage int

const (
	// FileStorage keeps tasks and results on disk: they survive a server
	// restart. The default.
	FileStorage Storage = iota
	// MemoryStorage keeps them in memory: faster, lost with the server.
	MemoryStorage
)

func (s Storage) js() jetstream.StorageType {
	if s == MemoryStorage {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// resultsMaxAge is how long a result waits for its pool.
const resultsMaxAge = 24 * time.Hour

// ensureStreams creates the two work-queue streams under n, or checks
// that they exist: every caller and worker does it, in any order.
func ensureStreams(ctx context.Context, js jetstream.JetStream, n names, st Storage) error {
	for _, c := range []jetstream.StreamConfig{
		{Name: n.tasksStream(), Subjects: []string{n.prefix + ".task.>"}},
		// A result nobody takes (its pool vanished, or closed as a
		// worker finished) would stay for ever in a work queue.
		{Name: n.resultsStream(), Subjects: []string{n.prefix + ".res.>"}, MaxAge: resultsMaxAge},
	} {
		c.Retention = jetstream.WorkQueuePolicy
		c.Storage = st.js()
		if _, err := js.CreateOrUpdateStream(ctx, c); err != nil {
			return fmt.Errorf("cluster: stream %s: %w", c.Name, err)
		}
	}
	return nil
}
