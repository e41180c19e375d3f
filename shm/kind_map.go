package shm

// KindMap is the kind of a segment that holds an ipcmap.Map. It takes a
// value from the range left free after KindCatalog, which Kind.valid
// accepts without a change to the list above it.
const KindMap Kind = 11

func init() { kindNames[KindMap] = "map" }
