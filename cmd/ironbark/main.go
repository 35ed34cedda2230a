// Command ironbark is the frontend binary: cloud controller, PXE
// provisioning, image tools and host management, one subcommand each
// (the table is in commands.go). It is pure Go; the node agent is the
// separate cgo binary ironbark-node.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}
