package ipcqueue

import (
	"context"
	"unsafe"
)

// PutBatch appends vs as one batch; see [Queue.PutBatch]. For a fixed-size
// T the messages are the values' memory, written straight from vs with no
// allocation; a gob-encoded T is encoded first (allocating).
func (t *Typed[T]) PutBatch(ctx context.Context, vs []T) (int, error) {
	if ok, err := t.putBatch(ctx, vs, true); !ok {
		return 0, err
	}
	return len(vs), nil
}

// TryPutBatch appends vs as one batch if it fits now; see
// [Queue.TryPutBatch].
func (t *Typed[T]) TryPutBatch(vs []T) (bool, error) {
	return t.putBatch(context.Background(), vs, false)
}

func (t *Typed[T]) putBatch(ctx context.Context, vs []T, block bool) (bool, error) {
	if !t.fixed {
		msgs := make([][]byte, len(vs))
		for i, v := range vs {
			b, err := t.encodeGob(v)
			if err != nil {
				return false, err
			}
			msgs[i] = b
		}
		b := batch{msgs: msgs}
		return t.q.putBatch(ctx, &b, block)
	}
	b := batch{flat: typedBytes(vs, t.c.Size()), stride: t.c.Size(), n: len(vs)}
	return t.q.putBatch(ctx, &b, block)
}

// typedBytes returns the memory of vs, values of size bytes each.
func typedBytes[T any](vs []T, size int) []byte {
	if len(vs) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&vs[0])), len(vs)*size)
}

// GetBatch takes up to len(vs) values into vs, as [Queue.GetBatch] does,
// and returns how many (at least one, unless it returns an error). A
// message that does not decode as a T is [ErrCorrupt] and consumed: if it
// comes first, GetBatch returns 0 and that error; after others, it stays
// for the next call and GetBatch returns those before it. For a fixed-size
// T it allocates nothing.
func (t *Typed[T]) GetBatch(ctx context.Context, vs []T) (int, error) {
	return t.getBatch(ctx, vs, true)
}

// TryGetBatch is GetBatch that does not wait; see [Queue.TryRead].
func (t *Typed[T]) TryGetBatch(vs []T) (int, error) {
	return t.getBatch(context.Background(), vs, false)
}

func (t *Typed[T]) getBatch(ctx context.Context, vs []T, block bool) (int, error) {
	var bad error // the first message, corrupt
	i := 0
	n, err := t.q.read(ctx, len(vs), func(m []byte) error {
		var err error
		if t.fixed {
			copy(bytesOf(&vs[i]), m)
			err = t.checkFixed(&vs[i], len(m))
		} else {
			vs[i], err = t.decodeGob(m)
		}
		if err != nil {
			if i > 0 {
				return errStopBefore // it stays for the next call
			}
			bad = err
			return errTakeStop
		}
		i++
		return nil
	}, block)
	switch {
	case bad != nil:
		var zero T
		vs[0] = zero
		return 0, bad
	case err == errStopBefore:
		return n, nil
	}
	return n, err
}
