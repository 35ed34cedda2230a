package scale

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"ironbark/internal/lab"
)

// HAProxy is Debian's haproxy in front of several controllers, as a site
// runs it: the EC2 API balanced per request (HTTP mode; a request to a
// controller that died answers 502, which clients retry), the node API
// passed through per connection (TCP mode: the nodes' mTLS ends at the
// controller). Dead controllers are taken out by health checks.
type HAProxy struct {
	EC2Addr, NodeAddr string // where clients and nodes connect

	cmd  *exec.Cmd
	log  *lab.Buffer
	done chan struct{}
}

// Start balances over the controllers, on EC2Addr and NodeAddr (free
// ports when empty). Start it once the controllers answer: health checks
// take a server that did not answer out until it has answered twice.
func (h *HAProxy) Start(ctx context.Context, dir string, ctls []*Controller) error {
	var err error
	if h.EC2Addr == "" {
		if h.EC2Addr, err = freeAddr(); err != nil {
			return err
		}
	}
	if h.NodeAddr == "" {
		if h.NodeAddr, err = freeAddr(); err != nil {
			return err
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `global
	maxconn 4096
defaults
	timeout connect 2s
	timeout client 2m
	timeout server 2m
	timeout check 1s
	retries 3
	option redispatch
frontend ec2
	mode http
	bind %s
	default_backend controllers-ec2
backend controllers-ec2
	mode http
	balance roundrobin
`, h.EC2Addr)
	for i, c := range ctls {
		fmt.Fprintf(&b, "\tserver c%d %s check inter 200ms fall 1 rise 2\n", i, c.EC2Addr)
	}
	fmt.Fprintf(&b, `frontend nodes
	mode tcp
	bind %s
	default_backend controllers-node
backend controllers-node
	mode tcp
	balance roundrobin
`, h.NodeAddr)
	for i, c := range ctls {
		fmt.Fprintf(&b, "\tserver c%d %s check inter 200ms fall 1 rise 2\n", i, c.NodeAddr)
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "haproxy", "-c", "-f", cfg).CombinedOutput(); err != nil {
		return fmt.Errorf("haproxy config: %v: %s", err, out)
	}
	h.log = &lab.Buffer{}
	h.cmd = exec.Command("haproxy", "-db", "-f", cfg)
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := h.cmd.Start(); err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	h.done = make(chan struct{})
	go func() { _ = h.cmd.Wait(); close(h.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", h.EC2Addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-h.done:
			return fmt.Errorf("haproxy exited: %s", h.log.String())
		default:
		}
		if time.Now().After(deadline) {
			h.Stop()
			return fmt.Errorf("haproxy does not listen on %s: %v", h.EC2Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Log is what haproxy printed.
func (h *HAProxy) Log() string { return h.log.String() }

// Stop ends haproxy.
func (h *HAProxy) Stop() {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(5 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
	}
}
