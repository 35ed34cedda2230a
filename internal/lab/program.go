package lab

import (
	"fmt"
	"os"
)

// Program is a T for a program that uses the lab kit outside `go test`
// (the bench/ comparisons): it keeps the cleanups the kit registers and
// runs them last-first when RunProgram ends, and its Fatalf unwinds to
// RunProgram, which returns it as an error.
type Program struct {
	Verbose  bool // Logf prints to stderr
	cleanups []func()
}

// programFatal is what Fatalf panics with; RunProgram recovers it.
type programFatal struct{ msg string }

func (p *Program) Helper()          {}
func (p *Program) Cleanup(f func()) { p.cleanups = append(p.cleanups, f) }
func (p *Program) Fatalf(format string, args ...any) {
	panic(programFatal{fmt.Sprintf(format, args...)})
}
func (p *Program) Logf(format string, args ...any) {
	if p.Verbose {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

// RunProgram runs fn with a fresh Program and then its cleanups, however
// fn ends; a Fatalf inside becomes the error returned, other panics go on.
func RunProgram(verbose bool, fn func(*Program) error) (err error) {
	p := &Program{Verbose: verbose}
	defer func() {
		for i := len(p.cleanups) - 1; i >= 0; i-- {
			p.cleanups[i]()
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(programFatal)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("%s", f.msg)
		}
	}()
	return fn(p)
}
