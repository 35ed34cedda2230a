package scale

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ironbark/internal/lab"
)

// Controller is one `ironbark controller` process under test.
type Controller struct {
	Binary  string // the ironbark binary
	DataDir string
	DB      string // store URL ("" for the data dir's SQLite)
	// EC2Addr and NodeAddr are where it listens (127.0.0.1:PORT; a free
	// port is picked when empty). Endpoint is the EC2 URL it writes into
	// credentials (its own address when empty: a proxy in front sets it).
	EC2Addr, NodeAddr, Endpoint string
	// MaxConnsPerClient is passed to --max-conns-per-client when set.
	MaxConnsPerClient int
	// DebugAddr, when set, serves the controller's profiler there
	// (--debug-listen).
	DebugAddr string

	cmd  *exec.Cmd
	log  *lab.Buffer
	done chan struct{}
	err  error
}

// Start runs the controller and waits until its EC2 API answers.
func (c *Controller) Start(ctx context.Context) error {
	var err error
	if c.EC2Addr == "" {
		if c.EC2Addr, err = freeAddr(); err != nil {
			return err
		}
	}
	if c.NodeAddr == "" {
		if c.NodeAddr, err = freeAddr(); err != nil {
			return err
		}
	}
	args := []string{"controller", "--data-dir", c.DataDir, "--listen", c.EC2Addr, "--node-listen", c.NodeAddr, "--plain-http"}
	if c.DB != "" {
		args = append(args, "--db", c.DB)
	}
	if c.Endpoint != "" {
		args = append(args, "--endpoint", c.Endpoint)
	}
	if c.DebugAddr != "" {
		args = append(args, "--debug-listen", c.DebugAddr)
	}
	if c.MaxConnsPerClient > 0 {
		args = append(args, "--max-conns-per-client", strconv.Itoa(c.MaxConnsPerClient))
	}
	c.log = &lab.Buffer{}
	c.cmd = exec.Command(c.Binary, args...)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("start controller: %w", err)
	}
	c.done = make(chan struct{})
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-c.done:
			return fmt.Errorf("controller exited at start (%v): %s", c.err, c.Log())
		case <-ctx.Done():
			c.Kill()
			return ctx.Err()
		default:
		}
		resp, err := http.Get("http://" + c.EC2Addr + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			c.Kill()
			return fmt.Errorf("controller did not answer on %s: %v; its log:\n%s", c.EC2Addr, err, c.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// EC2URL is the controller's own EC2 endpoint.
func (c *Controller) EC2URL() string { return "http://" + c.EC2Addr + "/" }

// NodeURL is the controller's own node API.
func (c *Controller) NodeURL() string { return "https://" + c.NodeAddr }

// PID is the controller's process ID.
func (c *Controller) PID() int { return c.cmd.Process.Pid }

// Log is what the controller printed so far.
func (c *Controller) Log() string { return c.log.String() }

// Kill ends the controller at once (SIGKILL), as a crash would.
func (c *Controller) Kill() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Kill()
	<-c.done
}

// Stop ends the controller cleanly (SIGTERM), killing it if it hangs.
func (c *Controller) Stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		c.Kill()
	}
}

// Usage is the controller's resident memory and CPU time so far.
type Usage struct {
	RSS, PeakRSS int64 // bytes
	CPU          time.Duration
}

// Usage reads the controller's /proc entries.
func (c *Controller) Usage() (Usage, error) {
	pid := c.PID()
	var u Usage
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			if f[0] == "VmRSS:" {
				u.RSS = kb << 10
			} else {
				u.PeakRSS = kb << 10
			}
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// Fields after the command name (which may hold spaces), from ")":
	// utime and stime are the 12th and 13th, in clock ticks (100/s).
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return u, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	u.CPU = time.Duration(ut+stt) * 10 * time.Millisecond
	return u, nil
}

// Command runs `ironbark ARGS --data-dir DIR [--db URL]` and returns its
// standard output.
func (c *Controller) Command(ctx context.Context, args ...string) (string, error) {
	args = append(args, "--data-dir", c.DataDir)
	if c.DB != "" {
		args = append(args, "--db", c.DB)
	}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, c.Binary, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ironbark %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// DBSize is the store's size on disk: the SQLite file with its WAL, or
// the PostgreSQL database.
func DBSize(ctx context.Context, dataDir, url string) (int64, error) {
	if url == "" {
		var n int64
		for _, f := range []string{"ironbark.db", "ironbark.db-wal"} {
			if st, err := os.Stat(filepath.Join(dataDir, f)); err == nil {
				n += st.Size()
			}
		}
		return n, nil
	}
	return pgSize(ctx, url)
}
