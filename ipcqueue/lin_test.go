//go:build linux

package ipcqueue

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/anishathalye/porcupine"
	"github.com/ipckit/ipckit/internal/helperproc"
)

// Linearizability: histories of Put, PutBatch, Reserve/Commit, TryPut,
// Get, Read and TryGet, recorded from goroutines over a heap queue and
// from real processes over a named one (timestamps from CLOCK_MONOTONIC,
// one clock for the whole system), some of them SIGKILLed mid-run, are
// checked with porcupine against a bounded FIFO of sized records that
// places each record (and its padding) exactly as the ring does. A batch
// is one step. Try calls are encoded as promised ("Try calls" in batch.go):
// TryPut may fail only if the model had no room for it or a claim was
// held; TryGet may report empty only if the model was empty or a Read of
// another client overlapped it; either may fail whatever the model says if
// it took the third exception, giving up on a lock holder that made no
// progress for tryPatience (a descheduled holder, on a loaded machine),
// which the tryGaveUp hook records in its output. A killed client's last operation stays
// pending: the model lets it have happened or not (a consumer's also to
// have only skipped a padding), and a Death step releases its claim.

const linRing = 256 // the ring of the queues these tests check

// Operation kinds.
const (
	linPut = iota
	linPutBatch
	linReserve
	linCommit
	linTryPut
	linGet
	linRead
	linTryGet
	linDeath
)

var linNames = []string{"Put", "PutBatch", "Reserve", "Commit", "TryPut", "Get", "Read", "TryGet", "Death"}

// linSize is the payload size of message id: 8 to 40 bytes.
func linSize(id uint32) int { return 8 + int(id*37%33) }

func linMsg(buf []byte, id uint32) []byte {
	b := buf[:linSize(id)]
	for i := range b {
		b[i] = byte(id >> (8 * (i % 4)))
	}
	return b
}

func linID(m []byte) uint32 { return binary.LittleEndian.Uint32(m) }

type linIn struct {
	kind, client int
	ids          string // 4-byte ids put, or Read's max in decimal
	overlapRead  bool   // TryGet: a Read of another client overlapped it
}

type linOut struct {
	pending bool
	ok      bool
	ids     string // ids taken
	gaveUp  bool   // a Try call that failed gave up on a stalled holder
}

// linState is the model: positions as the ring has them, the queued
// records (4-byte id, 8-byte position each), and the claim's holder.
type linState struct {
	tail, head uint64
	q          string
	claimer    int // -1: none
}

func idsOf(s string) []uint32 {
	out := make([]uint32, len(s)/4)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32([]byte(s[4*i:]))
	}
	return out
}

func idsStr(ids ...uint32) string {
	b := make([]byte, 0, 4*len(ids))
	for _, id := range ids {
		b = binary.LittleEndian.AppendUint32(b, id)
	}
	return string(b)
}

// place puts records of the given ids from st's tail as the ring does,
// and reports whether they fit (with the terminator) before head.
func (st linState) place(ids []uint32) (linState, bool) {
	q := []byte(st.q)
	p := st.tail
	for _, id := range ids {
		L := recLen(linSize(id))
		if off := p % linRing; off+L > linRing {
			p += linRing - off
		}
		q = binary.LittleEndian.AppendUint32(q, id)
		q = binary.LittleEndian.AppendUint64(q, p)
		p += L
	}
	fits := p+hdrSize-st.head <= linRing
	st.tail, st.q = p, string(q)
	return st, fits
}

// take removes the k oldest records if they are ids.
func (st linState) take(ids []uint32) (linState, bool) {
	if len(st.q) < 12*len(ids) || len(ids) == 0 {
		return st, false
	}
	for i, id := range ids {
		r := st.q[12*i:]
		if binary.LittleEndian.Uint32([]byte(r)) != id {
			return st, false
		}
		st.head = binary.LittleEndian.Uint64([]byte(r[4:])) + recLen(linSize(id))
	}
	st.q = st.q[12*len(ids):]
	return st, true
}

func linStep(s, in, out any) []any {
	st, i, o := s.(linState), in.(linIn), out.(linOut)
	var next []any
	if o.pending { // it may not have happened
		next = append(next, st)
	}
	switch i.kind {
	case linPut, linPutBatch, linTryPut, linCommit:
		if i.kind == linTryPut && o.gaveUp {
			next = append(next, st) // the third exception: promised
			break
		}
		if i.kind == linCommit && st.claimer != i.client || i.kind != linCommit && st.claimer >= 0 {
			if i.kind == linTryPut && !o.ok && !o.pending {
				next = append(next, st) // full while a claim is held: promised
			}
			break
		}
		ns, fits := st.place(idsOf(i.ids))
		ns.claimer = -1
		switch {
		case o.pending && fits, o.ok && fits:
			next = append(next, ns)
		case i.kind == linTryPut && !o.ok && !o.pending && !fits:
			next = append(next, st)
		}
	case linReserve:
		_, fits := st.place(idsOf(i.ids))
		if st.claimer < 0 && fits && o.ok && !o.pending {
			st.claimer = i.client
			next = append(next, st)
		}
	case linGet, linTryGet, linRead:
		if o.pending {
			max := 1
			if i.kind == linRead {
				max, _ = strconv.Atoi(i.ids)
			}
			all := make([]uint32, 0, len(st.q)/12)
			for j := 0; j+12 <= len(st.q); j += 12 {
				all = append(all, binary.LittleEndian.Uint32([]byte(st.q[j:])))
			}
			for k := 1; k <= max && k <= len(all); k++ {
				ns, _ := st.take(all[:k])
				next = append(next, ns)
			}
			if len(all) > 0 { // only a padding skipped
				ns := st
				ns.head = binary.LittleEndian.Uint64([]byte(st.q[4:]))
				next = append(next, ns)
			}
			break
		}
		if !o.ok {
			if st.q == "" || i.kind == linTryGet && (i.overlapRead || o.gaveUp) {
				next = append(next, st)
			}
			break
		}
		if ns, ok := st.take(idsOf(o.ids)); ok {
			next = append(next, ns)
		}
	case linDeath:
		if st.claimer == i.client {
			st.claimer = -1
		}
		next = append(next, st)
	}
	return next
}

var linModel = (&porcupine.NondeterministicModel{
	Init: func() []any { return []any{linState{claimer: -1}} },
	Step: linStep,
	DescribeOperation: func(in, out any) string {
		i, _ := in.(linIn)
		o, _ := out.(linOut)
		return fmt.Sprintf("%d %s(%v) -> %v %v pending=%v gaveUp=%v", i.client, linNames[i.kind], idsOf(i.ids), o.ok, idsOf(o.ids), o.pending, o.gaveUp)
	},
}).ToModel()

// monotonic reads CLOCK_MONOTONIC: one clock for every process.
func monotonic() int64 {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}

// linRecorder receives a client's operations: call, then ret (not called
// if the client dies inside the operation).
type linRecorder interface {
	call(in linIn, t int64)
	ret(out linOut, t int64)
}

// linClient runs ops operations of a producer (client even), or
// operations until EOF of a consumer (odd), on q, choosing them from rng,
// recording each in rec. gaveUp counts the Try calls on q that gave up on a
// stalled holder (q's tryGaveUp hook): a failed Try call during which it
// moved is marked gaveUp. With clients sharing q, another client's Try
// call can mark it too: looser than need be, and only in that rare case.
func linClient(q *Queue, client, ops int, rng *rand.Rand, rec linRecorder, gaveUp *atomic.Uint64) error {
	ctx := context.Background()
	bufs := newBufs(4, 64)
	seq := uint32(0)
	nextID := func() uint32 { seq++; return uint32(client)<<16 | seq }
	do := func(in linIn, f func() (linOut, error)) error {
		rec.call(in, monotonic())
		out, err := f()
		rec.ret(out, monotonic())
		return err
	}
	for i := 0; client%2 == 1 || i < ops; i++ { // consumers run to EOF
		var err error
		if client%2 == 0 {
			switch rng.IntN(4) {
			case 0:
				id := nextID()
				err = do(linIn{kind: linPut, client: client, ids: idsStr(id)}, func() (linOut, error) {
					return linOut{ok: true}, q.Put(ctx, linMsg(bufs[0], id))
				})
			case 1:
				k := 1 + rng.IntN(4)
				ids := make([]uint32, k)
				msgs := make([][]byte, k)
				for j := range ids {
					ids[j] = nextID()
					msgs[j] = linMsg(bufs[j], ids[j])
				}
				err = do(linIn{kind: linPutBatch, client: client, ids: idsStr(ids...)}, func() (linOut, error) {
					_, err := q.PutBatch(ctx, msgs)
					return linOut{ok: true}, err
				})
			case 2:
				id := nextID()
				var cl Claim
				err = do(linIn{kind: linReserve, client: client, ids: idsStr(id)}, func() (linOut, error) {
					var err error
					cl, err = q.Reserve(ctx, linSize(id))
					return linOut{ok: true}, err
				})
				if err == nil {
					copy(cl.Bytes(), linMsg(bufs[0], id))
					err = do(linIn{kind: linCommit, client: client, ids: idsStr(id)}, func() (linOut, error) {
						return linOut{ok: true}, cl.Commit()
					})
				}
			case 3:
				id := nextID()
				err = do(linIn{kind: linTryPut, client: client, ids: idsStr(id)}, func() (linOut, error) {
					g := gaveUp.Load()
					ok, err := q.TryPut(linMsg(bufs[0], id))
					return linOut{ok: ok, gaveUp: !ok && gaveUp.Load() != g}, err
				})
			}
			if err != nil {
				return err
			}
			continue
		}
		switch rng.IntN(3) {
		case 0:
			err = do(linIn{kind: linGet, client: client}, func() (linOut, error) {
				m, err := q.Get(ctx)
				if err != nil {
					return linOut{}, err
				}
				return linOut{ok: true, ids: idsStr(linID(m))}, nil
			})
		case 1:
			max := 1 + rng.IntN(4)
			err = do(linIn{kind: linRead, client: client, ids: strconv.Itoa(max)}, func() (linOut, error) {
				var got []uint32
				_, err := q.Read(ctx, max, func(m []byte) error { got = append(got, linID(m)); return nil })
				return linOut{ok: err == nil, ids: idsStr(got...)}, err
			})
		case 2:
			err = do(linIn{kind: linTryGet, client: client}, func() (linOut, error) {
				g := gaveUp.Load()
				m, ok, err := q.TryGet()
				if !ok {
					return linOut{gaveUp: gaveUp.Load() != g}, err
				}
				return linOut{ok: true, ids: idsStr(linID(m))}, err
			})
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// linHistory collects operations; safe for concurrent clients.
type linHistory struct {
	mu  sync.Mutex
	ops []porcupine.Operation
}

// linSlot records one client's operations into h.
type linSlot struct {
	h    *linHistory
	open *porcupine.Operation
}

func (s *linSlot) call(in linIn, t int64) {
	s.open = &porcupine.Operation{ClientId: in.client, Input: in, Call: t, Output: linOut{pending: true}, Return: -1}
}

func (s *linSlot) ret(out linOut, t int64) {
	s.open.Output, s.open.Return = out, t
	s.h.mu.Lock()
	s.h.ops = append(s.h.ops, *s.open)
	s.h.mu.Unlock()
	s.open = nil
}

// finish closes the history: pending operations end after everything,
// and TryGet's overlap with Reads of other clients is marked.
func (h *linHistory) finish(pending []porcupine.Operation) []porcupine.Operation {
	end := int64(0)
	for _, op := range append(h.ops, pending...) {
		end = max(end, op.Return, op.Call)
	}
	for _, op := range pending {
		op.Return = end + 1
		h.ops = append(h.ops, op)
	}
	for i, op := range h.ops {
		in := op.Input.(linIn)
		if in.kind != linTryGet {
			continue
		}
		for _, r := range h.ops {
			ri := r.Input.(linIn)
			if ri.kind == linRead && ri.client != in.client && r.Call <= op.Return && r.Return >= op.Call {
				in.overlapRead = true
				h.ops[i].Input = in
				break
			}
		}
	}
	return h.ops
}

func checkLinearizable(t *testing.T, ops []porcupine.Operation) {
	t.Helper()
	res, info := porcupine.CheckOperationsVerbose(linModel, ops, 20*time.Second)
	switch res {
	case porcupine.Ok:
		t.Logf("%d operations: linearizable", len(ops))
	case porcupine.Unknown:
		t.Logf("%d operations: porcupine timed out (no verdict)", len(ops))
	default:
		path := fmt.Sprintf("%s/lin.html", t.TempDir())
		porcupine.VisualizePath(linModel, info, path)
		sort.Slice(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
		for _, op := range ops {
			t.Logf("%d..%d %s", op.Call-ops[0].Call, op.Return-ops[0].Call, linModel.DescribeOperation(op.Input, op.Output))
		}
		t.Fatalf("%d operations: not linearizable (%s)", len(ops), path)
	}
}

// TestLinearizableHeap: 2 producer and 2 consumer goroutines over a heap
// queue (the race detector watches).
func TestLinearizableHeap(t *testing.T) {
	for run := range 3 {
		q := heapQueue(t, linRing, nil)
		var gaveUp atomic.Uint64
		q.faults.tryGaveUp = func() { gaveUp.Add(1) }
		h := &linHistory{}
		var pw, cw sync.WaitGroup
		for c := range 4 {
			wg := &pw
			if c%2 == 1 {
				wg = &cw
			}
			wg.Go(func() {
				if err := linClient(q, c, 80, rand.New(rand.NewPCG(uint64(run), uint64(c))), &linSlot{h: h}, &gaveUp); err != nil {
					t.Error(err)
					q.Shutdown() // nobody waits for ever on a broken queue
				}
			})
		}
		pw.Wait()
		q.Shutdown()
		cw.Wait()
		checkLinearizable(t, h.finish(nil))
	}
}

func init() {
	// linclient NAME CLIENT OPS SEED: linClient on the named queue,
	// writing each call and return to stdout as lines.
	helperproc.Register("linclient", func(a []string) error {
		q, err := Open(a[0])
		if err != nil {
			return err
		}
		defer q.Close()
		seed := uint64(atoi(a[3]))
		var gaveUp atomic.Uint64
		q.faults.tryGaveUp = func() { gaveUp.Add(1) }
		return linClient(q, atoi(a[1]), atoi(a[2]), rand.New(rand.NewPCG(seed, seed)), linLines{}, &gaveUp)
	})
}

// linLines writes a client's operations to stdout, one write per line, so
// that a SIGKILL leaves whole lines.
type linLines struct{}

func (linLines) call(in linIn, t int64) {
	fmt.Fprintf(os.Stdout, "C %d x%x %d\n", in.kind, in.ids, t)
}

func (linLines) ret(out linOut, t int64) {
	fmt.Fprintf(os.Stdout, "R %v x%x %d %v\n", out.ok, out.ids, t, out.gaveUp)
}

// readLines parses a client's lines into h; a call without its return is
// returned as pending.
func readLines(client int, r io.Reader, h *linHistory) (*porcupine.Operation, error) {
	s := &linSlot{h: h}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text() + " -")
		switch {
		case len(f) == 5 && f[0] == "C":
			ids, err := hex.DecodeString(strings.TrimPrefix(f[2], "x"))
			if err != nil {
				return nil, err
			}
			t, _ := strconv.ParseInt(f[3], 10, 64)
			s.call(linIn{kind: atoi(f[1]), client: client, ids: string(ids)}, t)
		case len(f) == 6 && f[0] == "R" && s.open != nil:
			ids, err := hex.DecodeString(strings.TrimPrefix(f[2], "x"))
			if err != nil {
				return nil, err
			}
			t, _ := strconv.ParseInt(f[3], 10, 64)
			s.ret(linOut{ok: f[1] == "true", ids: string(ids), gaveUp: f[4] == "true"}, t)
		default:
			return nil, fmt.Errorf("client %d: bad line %q", client, sc.Text())
		}
	}
	return s.open, sc.Err()
}

// TestLinearizableProcesses: 2 producer and 2 consumer processes over a
// named queue; in the second and third runs one producer and one consumer
// are SIGKILLed partway (their last operations stay pending, and a Death
// step from the kill on releases a claim they held).
func TestLinearizableProcesses(t *testing.T) {
	for run := range 3 {
		t.Run(fmt.Sprint("run", run), func(t *testing.T) {
			linProcesses(t, run)
		})
	}
}

func linProcesses(t *testing.T, run int) {
	q := namedQueue(t, linRing, nil)
	h := &linHistory{}
	var mu sync.Mutex
	var pending []porcupine.Operation
	var wg sync.WaitGroup
	procs := make([]*helperproc.Proc, 4)
	done := make([]chan struct{}, 4)
	killed := make([]bool, 4)
	for c := range 4 {
		procs[c] = helperproc.Start(t, command(t, "linclient", q.Segment().Name(), strconv.Itoa(c), "60", strconv.Itoa(run*10+c)))
		done[c] = make(chan struct{})
		pr, pw := io.Pipe()
		ready := make(chan struct{})
		go func() { // feed the lines, and say when 20 have come
			n := 0
			for line := range procs[c].Lines {
				fmt.Fprintln(pw, line)
				if n++; n == 20 {
					close(ready)
				}
			}
			if n < 20 {
				close(ready)
			}
			pw.Close()
		}()
		wg.Go(func() {
			defer close(done[c])
			op, err := readLines(c, pr, h)
			if err != nil {
				t.Error(err)
			}
			err = procs[c].Cmd.Wait()
			mu.Lock()
			defer mu.Unlock()
			if op != nil {
				pending = append(pending, *op)
			}
			if !killed[c] && err != nil {
				t.Errorf("client %d: %v", c, err)
			}
		})
		if run > 0 && (c == run%2*2 || c == 1+run%2*2) { // kill it partway
			wg.Go(func() { // waited for: it appends to pending
				<-ready
				mu.Lock()
				killed[c] = true
				pending = append(pending, porcupine.Operation{ClientId: c, Input: linIn{kind: linDeath, client: c}, Call: monotonic(), Output: linOut{}})
				mu.Unlock()
				procs[c].Cmd.Process.Signal(syscall.SIGKILL)
			})
		}
	}
	// Producers end (or die); then the consumers drain to EOF.
	<-done[0]
	<-done[2]
	q.Shutdown()
	wg.Wait()
	checkLinearizable(t, h.finish(pending))
}

// TestLinearizableGaveUp: a Put stalled inside its write holds the producer
// lock of a queue with room past tryPatience (as a descheduled process
// would on a loaded machine); a TryPut gives up on it and reports full, the
// third exception, which the history records and the model allows.
func TestLinearizableGaveUp(t *testing.T) {
	ctx := t.Context()
	q := heapQueue(t, linRing, nil)
	var gaveUp atomic.Uint64
	q.faults.tryGaveUp = func() { gaveUp.Add(1) }
	q.faults.tryPatience = time.Millisecond
	stalled, resume := make(chan struct{}), make(chan struct{})
	q.faults.putCopied = func() { close(stalled); <-resume }
	var once sync.Once
	release := func() { once.Do(func() { close(resume) }) }
	defer release() // before Close waits for the stalled Put
	h := &linHistory{}
	put, try := &linSlot{h: h}, &linSlot{h: h}
	errs := make(chan error, 1)
	buf := make([]byte, 64)
	put.call(linIn{kind: linPut, client: 0, ids: idsStr(1)}, monotonic())
	go func() { errs <- q.Put(ctx, linMsg(buf, 1)) }()
	<-stalled
	q.faults.putCopied = nil
	try.call(linIn{kind: linTryPut, client: 2, ids: idsStr(2)}, monotonic())
	ok, err := q.TryPut(linMsg(make([]byte, 64), 2))
	try.ret(linOut{ok: ok, gaveUp: !ok && gaveUp.Load() == 1}, monotonic())
	if err != nil || ok || gaveUp.Load() != 1 {
		t.Fatalf("TryPut = %v, %v with %d give-ups; want false, nil, 1", ok, err, gaveUp.Load())
	}
	release()
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	put.ret(linOut{ok: true}, monotonic())
	checkLinearizable(t, h.finish(nil))
}
