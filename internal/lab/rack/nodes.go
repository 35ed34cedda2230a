package rack

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The compute machines: LAB.md's Xen flags (TCG drops the CPU bits Xen
// and libvirt's Xen driver look for unless forced), a blank disk, and
// network boot first.
var xenMachine = []string{"-cpu", "qemu64,+svm,+npt,+vme,x-force-features=on", "-m", "3072", "-smp", "2"}

const nodeDisk = 4 << 30

// nodeMAC is compute machine i's MAC.
func nodeMAC(i int) string { return fmt.Sprintf("52:54:00:1b:01:%02x", i) }

// hostRow and nodeRow are what `host list --json` and `node list
// --json` print on the frontend (the fields read here).
type hostRow struct {
	Name    string `json:"name"`
	MAC     string `json:"mac"`
	IP      string `json:"ip"`
	Install string `json:"install"`
}

type nodeRow struct {
	ID        string `json:"id"`
	Hostname  string `json:"hostname"`
	State     string `json:"state"`
	Cores     int    `json:"cores"`
	MemoryMiB int    `json:"memoryMiB"`
}

// frontendJSON runs an ironbark list command on the frontend and decodes
// its --json rows.
func (r *runner) frontendJSON(ctx context.Context, args string, v any) error {
	out, err := r.admin.run(ctx, "ironbark "+args+" --json --data-dir /var/lib/ironbark")
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), v); err != nil {
		return fmt.Errorf("ironbark %s --json: %w: %q", args, err, out)
	}
	return nil
}

// stepNodes starts discovery on the frontend (Rocks' insert-ethers) and
// powers the blank machines on one after another, so each gets the next
// name; each PXE-boots, installs the compute appliance, reboots into Xen
// dom0 from its disk, and its agent enrolls with the frontend.
func (r *runner) stepNodes(ctx context.Context) error {
	if _, err := r.admin.run(ctx, "setsid ironbark discover --appliance compute --cluster cluster0 --no-tui --data-dir /var/lib/ironbark </dev/null >/var/log/discover.log 2>&1 &"); err != nil {
		return fmt.Errorf("start discovery: %w", err)
	}
	r.say("  on the frontend: ironbark discover --appliance compute --cluster cluster0")
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := r.admin.run(sctx, "pkill -INT -f 'ironbark discover' ; sleep 1; cat /var/log/discover.log"); err != nil {
			r.cfg.Log.Warn("stop discovery", "err", err)
		}
	}()
	for i := 0; i < r.cfg.Nodes; i++ {
		want := fmt.Sprintf("compute-0-%d", i)
		disk := filepath.Join(r.work, want+".disk")
		if err := os.WriteFile(disk, nil, 0o644); err != nil {
			return err
		}
		if err := os.Truncate(disk, nodeDisk); err != nil {
			return err
		}
		args := append(append([]string{}, xenMachine...), "-boot", "n", "-drive", "file="+disk+",if=virtio,format=raw")
		v := r.startVM(want, []nic{{r.priv, nodeMAC(i)}}, args...)
		r.nodes = append(r.nodes, v)
		name, err := r.awaitDiscovered(ctx, nodeMAC(i), v)
		if err != nil {
			return err
		}
		if name != want {
			return fmt.Errorf("machine %s was discovered as %s, want %s", nodeMAC(i), name, want)
		}
		r.say("  discovered %s (mac %s); installing the compute appliance (console %s)", name, nodeMAC(i), v.console)
	}
	for i, v := range r.nodes {
		name := fmt.Sprintf("compute-0-%d", i)
		if err := r.awaitInstalled(ctx, name, v); err != nil {
			return err
		}
		r.say("  %s installed (host list: installed); rebooting into Xen dom0 from its disk", name)
	}
	for i := range r.nodes {
		name := fmt.Sprintf("compute-0-%d", i)
		n, err := r.awaitEnrolled(ctx, name)
		if err != nil {
			return err
		}
		r.res.Nodes = append(r.res.Nodes, name)
		r.say("  %s enrolled: node %s %s, %d cores, %d MiB", name, n.ID, n.State, n.Cores, n.MemoryMiB)
	}
	return nil
}

// awaitDiscovered waits until the frontend names the machine with mac.
func (r *runner) awaitDiscovered(ctx context.Context, mac string, v *vm) (string, error) {
	for {
		var hosts []hostRow
		if err := r.frontendJSON(ctx, "host list", &hosts); err != nil {
			return "", err
		}
		for _, h := range hosts {
			if strings.EqualFold(h.MAC, mac) && h.IP != "" {
				return h.Name, nil
			}
		}
		if !v.running() {
			return "", fmt.Errorf("%s powered off before it was discovered:\n%s", v.name, tailLines(v.text(), 20))
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%s (mac %s) never discovered: %w; console tail:\n%s", v.name, mac, ctx.Err(), tailLines(v.text(), 20))
		case <-time.After(3 * time.Second):
		}
	}
}

// awaitInstalled waits until the frontend's host list says the host's
// install is done (the installer reports it before it reboots).
func (r *runner) awaitInstalled(ctx context.Context, host string, v *vm) error {
	last := ""
	for {
		var hosts []hostRow
		if err := r.frontendJSON(ctx, "host list", &hosts); err != nil {
			return err
		}
		for _, h := range hosts {
			if h.Name != host {
				continue
			}
			if h.Install == "installed" {
				return nil
			}
			if strings.HasPrefix(h.Install, "failed") {
				return fmt.Errorf("%s: install %s", host, h.Install)
			}
			if h.Install != last {
				r.cfg.Log.Info("install", "host", host, "state", h.Install)
				last = h.Install
			}
		}
		if !v.running() {
			return fmt.Errorf("%s powered off during its install:\n%s", host, tailLines(v.text(), 20))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: install not done (%s): %w", host, last, ctx.Err())
		case <-time.After(5 * time.Second):
		}
	}
}

// awaitEnrolled waits until node list shows host up.
func (r *runner) awaitEnrolled(ctx context.Context, host string) (nodeRow, error) {
	for {
		var nodes []nodeRow
		if err := r.frontendJSON(ctx, "node list", &nodes); err != nil {
			return nodeRow{}, err
		}
		for _, n := range nodes {
			if n.Hostname == host && n.State == "up" {
				return n, nil
			}
		}
		select {
		case <-ctx.Done():
			var tail string
			for _, v := range r.nodes {
				if v.name == host {
					tail = tailLines(v.text(), 30)
				}
			}
			return nodeRow{}, fmt.Errorf("%s never enrolled (node list: %+v): %w; console tail:\n%s", host, nodes, ctx.Err(), tail)
		case <-time.After(5 * time.Second):
		}
	}
}
