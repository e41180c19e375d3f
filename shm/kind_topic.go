package shm

// KindTopic is the kind of an ipctopic topic's segment. It sits in the gap
// below [KindQueue] (so that Kind.valid's bound admits it without a change
// to the kind list), and it is named here, in a file of its own, so that
// the objects added beside it do not touch the same lines.
const KindTopic Kind = 15 // ipctopic

func init() { kindNames[KindTopic] = "topic" }
