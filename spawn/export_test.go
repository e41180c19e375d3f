//go:build linux

package spawn

import "context"

// StartKillHook is [Start] with the afterCtxKill test hook set, for the
// tests of package spawn_test: hook runs once ctx's end has tried to kill
// the child, whether or not the kill was sent.
func StartKillHook[A any](ctx context.Context, fn *Func[A], arg A, opts *Options, hook func(sent bool)) (*Process, error) {
	return start(ctx, fn.e, []any{wireArg[A]{V: arg}}, opts, &hooks{afterCtxKill: hook})
}
