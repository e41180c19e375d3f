package shm

// Each shared value and array can live in a segment of its own: anonymous
// (New...), named (Create..., Open...). spec holds what those constructors
// need to know about one type; the segment's header records the kind, which
// Open checks.

type shared interface{ base() *ref }

type spec[V any, P interface {
	*V
	shared
}] struct {
	kind Kind
	size int
	at   func(*Segment, int) (P, error)
}

// own places the value at offset 0 of seg, which it then owns.
func (sp spec[V, P]) own(seg *Segment, err error) (P, error) {
	if err != nil {
		return nil, err
	}
	v, err := sp.at(seg, 0)
	if err != nil {
		seg.Close()
		return nil, err
	}
	v.base().owned = true
	return v, nil
}

func (sp spec[V, P]) anonymous() (P, error) {
	return sp.own(sp.kind.CreateAnonymous(sp.size))
}

func (sp spec[V, P]) create(name string, o *Options) (P, error) {
	return sp.own(sp.kind.Create(name, sp.size, o))
}

func (sp spec[V, P]) open(name string) (P, error) {
	return sp.own(sp.kind.Open(name))
}

var (
	int32Spec   = spec[Int32, *Int32]{KindInt32, 4, Int32At}
	int64Spec   = spec[Int64, *Int64]{KindInt64, 8, Int64At}
	uint64Spec  = spec[Uint64, *Uint64]{KindUint64, 8, Uint64At}
	float64Spec = spec[Float64, *Float64]{KindFloat64, 8, Float64At}
)

// NewInt32 returns a zero Int32 in an anonymous segment of its own.
func NewInt32() (*Int32, error) { return int32Spec.anonymous() }

// CreateInt32 returns a zero Int32 in a new named segment; see [Create].
func CreateInt32(name string, opts *Options) (*Int32, error) { return int32Spec.create(name, opts) }

// OpenInt32 opens the Int32 in the named segment made by [CreateInt32].
func OpenInt32(name string) (*Int32, error) { return int32Spec.open(name) }

// NewInt64 returns a zero Int64 in an anonymous segment of its own.
func NewInt64() (*Int64, error) { return int64Spec.anonymous() }

// CreateInt64 returns a zero Int64 in a new named segment; see [Create].
func CreateInt64(name string, opts *Options) (*Int64, error) { return int64Spec.create(name, opts) }

// OpenInt64 opens the Int64 in the named segment made by [CreateInt64].
func OpenInt64(name string) (*Int64, error) { return int64Spec.open(name) }

// NewUint64 returns a zero Uint64 in an anonymous segment of its own.
func NewUint64() (*Uint64, error) { return uint64Spec.anonymous() }

// CreateUint64 returns a zero Uint64 in a new named segment; see [Create].
func CreateUint64(name string, opts *Options) (*Uint64, error) { return uint64Spec.create(name, opts) }

// OpenUint64 opens the Uint64 in the named segment made by [CreateUint64].
func OpenUint64(name string) (*Uint64, error) { return uint64Spec.open(name) }

// NewFloat64 returns a zero Float64 in an anonymous segment of its own.
func NewFloat64() (*Float64, error) { return float64Spec.anonymous() }

// CreateFloat64 returns a zero Float64 in a new named segment; see [Create].
func CreateFloat64(name string, opts *Options) (*Float64, error) {
	return float64Spec.create(name, opts)
}

// OpenFloat64 opens the Float64 in the named segment made by [CreateFloat64].
func OpenFloat64(name string) (*Float64, error) { return float64Spec.open(name) }
