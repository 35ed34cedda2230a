package rack

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// undo is the lab kit's T (internal/lab) for a program: it keeps the
// cleanups the kit registers and runs them last-first at the end, and
// turns the kit's Fatalf into an error Run returns.
type undo struct {
	mu    sync.Mutex
	fns   []func()
	log   *slog.Logger
	names []string // what was made, for the final report
}

// fatal is what Fatalf panics with; Run recovers it.
type fatal struct{ err error }

func (u *undo) Helper() {}

func (u *undo) Cleanup(fn func()) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.fns = append(u.fns, fn)
}

func (u *undo) Fatalf(format string, args ...any) {
	panic(fatal{fmt.Errorf(format, args...)})
}

func (u *undo) Logf(format string, args ...any) {
	u.log.Debug(fmt.Sprintf(format, args...))
}

// made records something the run created, for the report at the end.
func (u *undo) made(what string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.names = append(u.names, what)
}

// run undoes everything, last made first.
func (u *undo) run() {
	u.mu.Lock()
	fns := u.fns
	u.fns = nil
	u.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if r := recover(); r != nil {
					u.log.Warn("cleanup failed", "err", fmt.Sprint(r))
				}
			}()
			fns[i]()
		}()
	}
}

// catch turns a kit's Fatalf panic into an error; other panics go on.
func catch(err *error) {
	r := recover()
	if r == nil {
		return
	}
	f, ok := r.(fatal)
	if !ok {
		panic(r)
	}
	if *err == nil || errors.Is(f.err, *err) {
		*err = f.err
	}
}
