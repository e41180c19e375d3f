package shm

// CreateAnonymousInit makes an anonymous segment of kind k, as
// [Kind.CreateAnonymous] does, and calls fill with it before returning it:
// the counterpart of [Kind.CreateInit] for a segment that nobody else can
// reach until it is passed on. If fill fails, the segment is closed and
// fill's error returned as it is.
func (k Kind) CreateAnonymousInit(size int, fill func(seg *Segment) error) (*Segment, error) {
	return initPrivate(k.CreateAnonymous, size, fill)
}

// NewHeapInit makes a heap segment of kind k, as [Kind.NewHeap] does, and
// calls fill with it before returning it, as [Kind.CreateAnonymousInit]
// does.
func (k Kind) NewHeapInit(size int, fill func(seg *Segment) error) (*Segment, error) {
	return initPrivate(k.NewHeap, size, fill)
}

func initPrivate(mk func(int) (*Segment, error), size int, fill func(*Segment) error) (*Segment, error) {
	seg, err := mk(size)
	if err != nil {
		return nil, err
	}
	if err := fill(seg); err != nil {
		seg.Close()
		return nil, err
	}
	return seg, nil
}
