package ipcpipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipckit/ipckit/internal/liveness"
	"github.com/ipckit/ipckit/internal/release"
	"github.com/ipckit/ipckit/internal/robust"
	"github.com/ipckit/ipckit/shm"
)

// Options configures the creation of a pipe. A nil *Options, like the zero
// Options, means the defaults. The constructors only read it.
type Options struct {
	// Size is each direction's ring in bytes, rounded up to a power of two
	// (at least 64); 0 means [DefaultSize]. A message costs its length
	// rounded up to 8, plus 8. Out of range is an error wrapping
	// [os.ErrInvalid].
	Size int
	// MaxMsg is the largest message, fixed at creation: by default a
	// quarter of the ring, at most 1 MiB; at most half the ring less 8.
	MaxMsg int
	// Mode is the permission of a named pipe's file (default 0600); only
	// [Create] uses it.
	Mode os.FileMode
}

func (o *Options) config(duplex bool) (config, error) {
	size := DefaultSize
	if o != nil && o.Size != 0 {
		size = o.Size
	}
	if size <= 0 || size > maxRing {
		return config{}, fmt.Errorf("ipcpipe: size %d, want 1 to %d: %w", size, uint64(maxRing), os.ErrInvalid)
	}
	r := max(uint64(1)<<bits.Len64(uint64(size-1)), minRing)
	c := config{ring: r, maxMsg: uint32(min(r/4, 1<<20)), duplex: duplex}
	if o != nil && o.MaxMsg != 0 {
		if o.MaxMsg < 0 || uint64(o.MaxMsg) > maxMsgFor(r) {
			return config{}, fmt.Errorf("ipcpipe: maximum message %d for a %d-byte ring, want 1 to %d: %w", o.MaxMsg, r, maxMsgFor(r), os.ErrInvalid)
		}
		c.maxMsg = uint32(o.MaxMsg)
	}
	return c, nil
}

// direction is one ring and its words, as one end's handle sees it.
type direction struct {
	tail, head  *atomic.Uint64
	data, space *atomic.Uint32
	ring        []byte
}

// mapping is a pipe's segment as this process maps it, shared by the
// handles of both ends made together (the last Close releases it).
type mapping struct {
	seg  *shm.Segment
	refs atomic.Int32
}

func (m *mapping) release() error {
	if m.refs.Add(-1) == 0 {
		return m.seg.Close()
	}
	return nil
}

// Conn is one end of a pipe: Python's multiprocessing.connection.Connection.
// Get two from [Pipe], [New], [NewHeap] or [Create], one from [Open] or by
// gob-decoding a handle in a spawn child. The zero Conn is not usable.
//
// A Conn is safe for concurrent use by goroutines (sends are serialised,
// and so are receives); its end belongs to one process at a time (see the
// package doc). It must not be copied (go vet catches copies). Send does
// not retain msg; Recv returns a new slice the caller owns.
type Conn struct {
	_ noCopy

	m    *mapping
	cfg  config
	mask uint64
	end  int
	self liveness.Token

	owner, peerOwner *atomic.Uint64
	peerPid          *atomic.Uint32
	closed           *atomic.Uint32 // this end's closed word
	peerClosed       *atomic.Uint32
	out, in          *direction // nil where the pipe is one-way
	words            []*atomic.Uint32

	open      atomic.Bool
	closer    robust.Closer
	closeOnce sync.Once
	closeErr  error

	sendMu     sync.Mutex
	cachedHead uint64 // a lower bound of out's head, under sendMu
	sendSpin   spinner
	_          [64]byte
	recvMu     sync.Mutex
	cachedTail uint64 // a lower bound of in's tail, under recvMu
	unfenced   uint64 // ring bytes taken since the last fenced head store, under recvMu
	fenceEvery uint64 // R/8: see take
	recvSpin   spinner

	faults faults
}

// faults are test hooks, bbolt's db.ops style: nil in production. A test
// child sets one to kill itself at that point of a call.
type faults struct {
	// sendCopied runs inside Send after the record is written and before
	// it is published (the tail store).
	sendCopied func()
	// recvCopied runs inside a receive after the message is copied out and
	// before it is taken (the head store).
	recvCopied func()
}

// Pipe returns the two ends of a new anonymous pipe with default options:
// Python's multiprocessing.Pipe(duplex). With duplex false, the first end
// only receives and the second only sends.
func Pipe(duplex bool) (*Conn, *Conn, error) { return New(duplex, nil) }

// New returns the two ends of a new pipe in an anonymous segment: an end
// reaches another process only in the argument of a child started by
// spawn, and the memory is freed when the last process using it exits.
// opts.Mode does not apply.
func New(duplex bool, opts *Options) (*Conn, *Conn, error) {
	return build(duplex, opts, "", shm.KindPipe.CreateAnonymous)
}

// NewHeap returns a pipe's two ends as [New] does, on the Go heap: for one
// process only, where the race detector sees every access.
func NewHeap(duplex bool, opts *Options) (*Conn, *Conn, error) {
	return build(duplex, opts, "", shm.KindPipe.NewHeap)
}

// Create returns the two ends of a new named pipe; it fails with an error
// wrapping [os.ErrExist] if the name is taken. Another process takes an
// end over with [Open]. Remove the name with [Remove].
func Create(name string, duplex bool, opts *Options) (*Conn, *Conn, error) {
	return build(duplex, opts, name, nil)
}

// Open attaches to end (0 or 1) of the named pipe made by [Create], and
// takes that end over: from now on it belongs to this process (see the
// package doc). An end already closed is an error wrapping [os.ErrClosed].
func Open(name string, end int) (*Conn, error) {
	if end != 0 && end != 1 {
		return nil, fmt.Errorf("ipcpipe: end %d, want 0 or 1: %w", end, os.ErrInvalid)
	}
	seg, err := shm.KindPipe.Open(name)
	if err != nil {
		return nil, err
	}
	c := new(Conn)
	if err := adopt(c, seg, end); err != nil {
		return nil, fmt.Errorf("ipcpipe: open %q: %w", name, err)
	}
	return c, nil
}

// Remove deletes the named pipe's file; handles keep working.
func Remove(name string) error { return shm.Remove(name) }

// build makes a pipe and returns handles to both ends: in a new named
// segment if name is not "" (its control block written before the name is
// published), else in the private segment mk makes.
func build(duplex bool, opts *Options, name string, mk func(n int) (*shm.Segment, error)) (*Conn, *Conn, error) {
	cfg, err := opts.config(duplex)
	if err != nil {
		return nil, nil, err
	}
	self, err := liveness.Self()
	if err != nil {
		return nil, nil, fmt.Errorf("ipcpipe: %w", err)
	}
	fill := func(seg *shm.Segment) error {
		b := seg.Bytes()
		writeConfig(b, cfg)
		for e := range 2 {
			u32At(b, offEnd+e*128+endPid).Store(uint32(os.Getpid()))
			u64At(b, offEnd+e*128+endOwner).Store(uint64(self))
		}
		return nil
	}
	var seg *shm.Segment
	if name != "" {
		var so *shm.Options
		if opts != nil {
			so = &shm.Options{Mode: opts.Mode}
		}
		seg, err = shm.KindPipe.CreateInit(name, cfg.size(), so, fill)
	} else if seg, err = mk(cfg.size()); err == nil {
		fill(seg) // nobody else can reach seg yet
	}
	if err != nil {
		return nil, nil, err
	}
	m := &mapping{seg: seg}
	m.refs.Store(2)
	a, b := new(Conn), new(Conn)
	if err := a.attach(m, 0, self); err != nil {
		seg.Close()
		return nil, nil, err
	}
	if err := b.attach(m, 1, self); err != nil {
		seg.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// adopt attaches c, which must be new, to end of the pipe in seg (owning
// seg, closing it if it fails) and takes the end over for this process.
func adopt(c *Conn, seg *shm.Segment, end int) error {
	self, err := liveness.Self()
	if err != nil {
		seg.Close()
		return fmt.Errorf("ipcpipe: %w", err)
	}
	m := &mapping{seg: seg}
	m.refs.Store(1)
	if err := c.attach(m, end, self); err != nil {
		seg.Close()
		return err
	}
	if c.closed.Load() != 0 {
		c.open.Store(false)
		seg.Close()
		return fmt.Errorf("ipcpipe: end %d was closed: %w", end, os.ErrClosed)
	}
	u32At(seg.Bytes(), offEnd+end*128+endPid).Store(uint32(os.Getpid()))
	c.owner.Store(uint64(self))
	// The other end's sleepers follow the end's previous holder: wake them
	// to follow this process instead (its death is then reported at once).
	for _, w := range c.words {
		robust.WakeAll(w)
	}
	return nil
}

// attach makes c, which must be new, a handle to end of the pipe mapped by
// m, after validating the control block.
func (c *Conn) attach(m *mapping, end int, self liveness.Token) error {
	b := m.seg.Bytes()
	cfg, err := readConfig(b)
	if err != nil {
		return err
	}
	c.m, c.cfg, c.mask, c.end, c.self = m, cfg, cfg.ring-1, end, self
	me, peer := offEnd+end*128, offEnd+(1-end)*128
	c.owner, c.closed = u64At(b, me+endOwner), u32At(b, me+endClosed)
	c.peerOwner, c.peerPid, c.peerClosed = u64At(b, peer+endOwner), u32At(b, peer+endPid), u32At(b, peer+endClosed)
	dir := func(d int) *direction {
		if !cfg.has(d) {
			return nil
		}
		o, r := offDir+d*512, cfg.ringOff(d)
		x := &direction{
			tail: u64At(b, o+dirTail), head: u64At(b, o+dirHead),
			data: u32At(b, o+dirData), space: u32At(b, o+dirSpace),
			ring: b[r : r+int(cfg.ring) : r+int(cfg.ring)],
		}
		c.words = append(c.words, x.data, x.space)
		return x
	}
	c.out, c.in = dir(end), dir(1-end)
	if c.out != nil {
		c.cachedHead = c.out.head.Load()
	}
	if c.in != nil {
		c.cachedTail = c.in.head.Load()
	}
	c.fenceEvery = cfg.ring / 8
	c.SetSpin(0)
	c.open.Store(true)
	return nil
}

// SetSpin sets this handle's longest spin before sleeping, for Send (pipe
// full) and Recv (pipe empty): 0 means [robust.DefaultSpin] (50 us), a
// negative d never spins. It may be called at any time.
func (c *Conn) SetSpin(d time.Duration) {
	if d == 0 {
		d = robust.DefaultSpin
	}
	c.sendSpin.setMax(d)
	c.recvSpin.setMax(d)
}

// Duplex reports whether both ends send and receive.
func (c *Conn) Duplex() bool { return c.cfg.duplex }

// MaxMsg returns the largest message the pipe carries.
func (c *Conn) MaxMsg() int { return int(c.cfg.maxMsg) }

// Segment returns the segment the pipe lives in.
func (c *Conn) Segment() *shm.Segment { return c.m.seg }

// check is the common entry of a call using d (out or in), under its lock.
func (c *Conn) check(d *direction) error {
	if !c.open.Load() {
		return errClosed
	}
	if d == nil {
		return ErrOneWay
	}
	if c.owner.Load()&^transitBit != uint64(c.self) {
		return ErrMoved
	}
	return nil
}

// Send sends msg to the other end, waiting while the pipe is full. It
// returns [ErrTooLarge] for a message over [Conn.MaxMsg], an error wrapping
// [io.ErrClosedPipe] once the other end is closed (and [ErrPeerDied] too,
// when its process died), ctx.Err() if ctx is done first (nothing sent),
// and the errors of the package doc. Send does not retain msg.
func (c *Conn) Send(ctx context.Context, msg []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	d := c.out
	if err := c.check(d); err != nil {
		return err
	}
	n := uint64(len(msg))
	if n > uint64(c.cfg.maxMsg) {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, n, c.cfg.maxMsg)
	}
	if c.peerClosed.Load() != 0 {
		return fmt.Errorf("ipcpipe: send: %w", io.ErrClosedPipe)
	}
	t := d.tail.Load()
	if t&7 != 0 {
		return fmt.Errorf("ipcpipe: tail %d: %w", t, ErrCorrupt)
	}
	L := recLen(n)
	off := t & c.mask
	var pad uint64
	if off+L > c.cfg.ring {
		pad = c.cfg.ring - off
	}
	if t+pad+L-c.cachedHead > c.cfg.ring {
		if err := c.waitSpace(ctx, d, t, pad+L); err != nil {
			return err
		}
	}
	if pad != 0 {
		*word(d.ring, off) = padMark
	}
	o := (t + pad) & c.mask
	*word(d.ring, o) = n
	copy(d.ring[o+hdrSize:o+hdrSize+n], msg)
	if c.faults.sendCopied != nil {
		c.faults.sendCopied()
	}
	d.tail.Store(t + pad + L) // publishes the record; a full fence
	if d.data.Load()&1 != 0 {
		robust.Wake(d.data)
	}
	return nil
}

// waitSpace waits until need bytes from tail t are free in d, under sendMu.
func (c *Conn) waitSpace(ctx context.Context, d *direction, t, need uint64) error {
	var dead bool
	room := func() bool { return t+need-d.head.Load() <= c.cfg.ring }
	ready := func() bool { return room() || c.peerClosed.Load() != 0 || !c.open.Load() }
	for {
		h := d.head.Load()
		if t-h > c.cfg.ring || h&7 != 0 {
			return fmt.Errorf("ipcpipe: tail %d, head %d, ring of %d bytes: %w", t, h, c.cfg.ring, ErrCorrupt)
		}
		if t+need-h <= c.cfg.ring {
			c.cachedHead = h
			return nil
		}
		switch {
		case !c.open.Load():
			return errClosed
		case c.peerClosed.Load() != 0:
			return fmt.Errorf("ipcpipe: send: %w", io.ErrClosedPipe)
		case dead:
			return peerDied(c.peerPid.Load(), false)
		}
		if err := c.wait(ctx, d.space, &c.sendSpin, ready, &dead); err != nil {
			return err
		}
	}
}

// wait spins on ready with spin, then sleeps on fx until ready, following
// the other end's process: dead is set once it is found dead.
func (c *Conn) wait(ctx context.Context, fx *atomic.Uint32, spin *spinner, ready func() bool, dead *bool) error {
	ok, start := spin.Spin(ready)
	if ok {
		return nil
	}
	spun := !start.IsZero()
	// The other end may change hands while this sleeps (a child attaches
	// it, and wakes this): Holders and Watch read its owner each time.
	o := robust.WaitOptions{
		Closer: &c.closer,
		Holders: func() []liveness.Token {
			if p := c.peer(); p != 0 {
				return []liveness.Token{p}
			}
			return nil
		},
		Watch: func() bool {
			p := c.peer()
			*dead = p != 0 && liveness.Check(p) == liveness.Dead
			return *dead
		},
	}
	err := robust.Wait(ctx, fx, ready, &o)
	switch {
	case errors.Is(err, os.ErrClosed):
		return errClosed
	case err != nil:
		return err
	}
	if spun {
		spin.slept()
	}
	return nil
}

// spinner is a robust.Spinner (its budget halves when a spin fails and
// doubles when one succeeds) without its Slept rule, which raises the
// budget to twice a wait that slept if that wait was shorter than the
// maximum: on a machine with more runnable threads than CPUs, a spinning
// end holds the CPU its peer needs to answer, the answer then comes a
// timeslice later, within the maximum, and Slept keeps the budget there
// (ping-pong round trips several times those of not spinning: the
// package's benchmark note). Instead, every probeEvery waits that slept,
// the budget goes back to the maximum once: a budget left at the minimum
// after a busy spell grows again when spinning pays, at the cost of one
// long spin in probeEvery sleeps when it does not.
type spinner struct {
	robust.Spinner
	max    atomic.Int64 // the handle's SetSpin
	sleeps uint64       // waits that slept, under the call's mutex
}

const probeEvery = 64

func (s *spinner) setMax(d time.Duration) {
	s.max.Store(int64(d))
	s.SetMax(d)
}

// slept counts a wait that slept after its spin, and probes.
func (s *spinner) slept() {
	if s.sleeps++; s.sleeps%probeEvery == 0 {
		s.SetMax(time.Duration(s.max.Load()))
	}
}

// peer returns the token of the other end's process, or 0 if it is this
// one.
func (c *Conn) peer() liveness.Token {
	p := liveness.Token(c.peerOwner.Load() &^ transitBit)
	if p == c.self {
		return 0
	}
	return p
}

// Recv returns the next message, waiting while there is none. Once the
// other end is closed and every message it sent was received, it returns
// [io.EOF] (matching [ErrPeerDied] too, when its process died); if ctx is
// done first, ctx.Err(). The slice is new and the caller's.
func (c *Conn) Recv(ctx context.Context) ([]byte, error) {
	var out []byte
	_, _, err := c.recv(ctx, nil, &out, true, true, false)
	return out, err
}

// RecvInto is Recv into buf, returning the message's length, without
// allocating. If buf is too short it returns the length and
// [io.ErrShortBuffer], leaving the message in the pipe.
func (c *Conn) RecvInto(ctx context.Context, buf []byte) (int, error) {
	n, _, err := c.recv(ctx, buf, nil, true, true, false)
	return n, err
}

// Poll reports whether a Recv would return without waiting (a message, or
// the end of the pipe), waiting up to timeout for that: Python's
// poll(timeout). A timeout of 0 only looks; a negative one waits as long
// as it takes. It returns false, nil when the time is up.
func (c *Conn) Poll(timeout time.Duration) (bool, error) {
	if timeout == 0 {
		_, ok, err := c.recv(context.Background(), nil, nil, false, false, false)
		return ok, err
	}
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	ok, err := c.PollContext(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return false, nil
	}
	return ok, err
}

// PollContext is Poll that waits until a Recv would not wait, or ctx is
// done (then false, ctx.Err()).
func (c *Conn) PollContext(ctx context.Context) (bool, error) {
	_, ok, err := c.recv(ctx, nil, nil, false, true, false)
	return ok, err
}

// recv takes the next message into buf, or a new *out if out != nil (take),
// or only looks (!take); block waits for one. discard takes a message
// longer than buf without copying it. A poll reports ok at the end of the
// pipe, with no error.
func (c *Conn) recv(ctx context.Context, buf []byte, out *[]byte, take, block, discard bool) (int, bool, error) {
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	d := c.in
	if err := c.check(d); err != nil {
		return 0, false, err
	}
	var dead bool
	h := d.head.Load()
	ready := func() bool { return d.tail.Load() != h || c.peerClosed.Load() != 0 || !c.open.Load() }
	for {
		if h == c.cachedTail {
			c.cachedTail = d.tail.Load()
		}
		t := c.cachedTail
		if t-h > c.cfg.ring || (t|h)&7 != 0 {
			return 0, false, fmt.Errorf("ipcpipe: tail %d, head %d, ring of %d bytes: %w", t, h, c.cfg.ring, ErrCorrupt)
		}
		if t != h {
			off := h & c.mask
			w := *word(d.ring, off)
			if w == padMark {
				h += c.cfg.ring - off
				if t-h > c.cfg.ring {
					return 0, false, fmt.Errorf("ipcpipe: padding at %d past tail %d: %w", h, t, ErrCorrupt)
				}
				continue
			}
			L := recLen(w)
			if w > uint64(c.cfg.maxMsg) || L > t-h || off+L > c.cfg.ring {
				return 0, false, fmt.Errorf("ipcpipe: record of %d bytes at position %d, tail %d: %w", w, h, t, ErrCorrupt)
			}
			n := int(w)
			if !take {
				return n, true, nil
			}
			src := d.ring[off+hdrSize : off+hdrSize+w]
			switch {
			case out != nil:
				*out = append([]byte{}, src...)
			case n <= len(buf):
				copy(buf, src)
			case !discard:
				return n, false, io.ErrShortBuffer
			}
			if c.faults.recvCopied != nil {
				c.faults.recvCopied()
			}
			c.take(d, h+L, L)
			return n, true, nil
		}
		// Empty. The other end's closed word (or its death) before one
		// more look at tail: what it sent before is taken first.
		if c.peerClosed.Load() != 0 || dead {
			if c.cachedTail = d.tail.Load(); c.cachedTail != h {
				continue
			}
			if !take {
				return 0, true, nil
			}
			if dead {
				return 0, false, peerDied(c.peerPid.Load(), true)
			}
			return 0, false, io.EOF
		}
		if !block {
			return 0, false, nil
		}
		if !c.open.Load() {
			return 0, false, errClosed
		}
		if err := c.wait(ctx, d.data, &c.recvSpin, ready, &dead); err != nil {
			return 0, false, err
		}
	}
}

// take publishes head h after a record of L ring bytes was copied out,
// under recvMu: a release store and a look at the writer's sleepers (see
// the layout's "Lazy fence"), and a full fence before that look only every
// fenceEvery bytes, when the ring runs empty in this reader's view, and
// when the writer sleeps.
func (c *Conn) take(d *direction, h, L uint64) {
	if c.unfenced += L; c.unfenced < c.fenceEvery && h != c.cachedTail {
		release.Store64(d.head, h) // the message is taken
		if d.space.Load()&1 == 0 {
			return
		}
	}
	c.unfenced = 0
	d.head.Store(h) // the message is taken; a full fence
	if d.space.Load()&1 != 0 {
		robust.Wake(d.space)
	}
}

// Close releases this handle. If this process holds the end (it was not
// handed on), the end is closed for good: the other end receives what was
// sent, then [io.EOF], and its sends fail with [io.ErrClosedPipe]. Calls
// blocked on this handle return an error wrapping [os.ErrClosed], as does
// every later call. Close is safe to call twice, and concurrently with
// other calls.
func (c *Conn) Close() error { return c.close(true) }

// close releases this handle, and closes the end if end is true and this
// process holds it.
func (c *Conn) close(end bool) error {
	c.closeOnce.Do(func() {
		if c.m == nil {
			return // the zero Conn
		}
		c.open.Store(false)
		c.closer.Close(c.words...)
		c.sendMu.Lock() // wait for the calls in progress
		c.recvMu.Lock()
		if end && c.owner.Load() == uint64(c.self) {
			// After this end's last send (sendMu): the other end's last
			// look at tail after seeing closed finds every message.
			c.closed.Store(1)
			for _, w := range c.words {
				robust.WakeAll(w)
			}
		}
		c.recvMu.Unlock()
		c.sendMu.Unlock()
		c.closeErr = c.m.release()
	})
	return c.closeErr
}

// noCopy makes go vet's copylocks check report copies.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
