package nodeagent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ironbark/controller/cluster"
	"ironbark/internal/nodeapi"
)

// TestFirstBootFromIdentityFile is issue 8's "first boot joins the cloud"
// on the agent's side: the agent reads the installer's node.json, enrolls
// under the host's name with the host-bound token, keeps its certificate
// and drops the spent token from the file; a reinstall (new disk, new
// token) re-enrolls as the same node.
func TestFirstBootFromIdentityFile(t *testing.T) {
	macs := localMACs()
	if len(macs) == 0 {
		t.Fatal("this machine has no Ethernet interface to bind a token to")
	}
	r := newRig(t)
	ctx := context.Background()
	install := func(attempt string) string {
		tok, err := r.ctl.InstallToken(ctx, r.ctl.CA(), cluster.HostBinding{Cluster: "zone-a", Hostname: "compute-0-0",
			MAC: macs[0], Attempt: attempt}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// What pxe's install profile carries and the installer writes.
		id := nodeapi.Identity{Hostname: "compute-0-0", Cluster: "zone-a", Appliance: "compute",
			ControllerURL: r.ctl.URL, CAFingerprint: r.ctl.CA().Fingerprint(), EnrollmentToken: tok}
		p := filepath.Join(t.TempDir(), "node.json")
		if err := os.WriteFile(p, id.Marshal(), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := install("a1")
	r.startAgentWith(t, func(c *Config) {
		c.Controller, c.Token, c.Hostname, c.IdentityFile = "", "", "", file
	})
	waitEnrolled(t, r.state, file)
	nodes, _ := r.ctl.Nodes(ctx, "zone-a")
	if len(nodes) != 1 || nodes[0].Hostname != "compute-0-0" {
		t.Fatalf("nodes %+v, want compute-0-0", nodes)
	}
	first := nodes[0].ID
	b, _ := os.ReadFile(file)
	if strings.Contains(string(b), "ibt1.") || !strings.Contains(string(b), `"hostname": "compute-0-0"`) {
		t.Fatalf("identity file after enrollment:\n%s", b)
	}
	st, err := nodeapi.ReadIdentity(filepath.Join(r.state, identityFile))
	if err != nil || st.NodeID != first || st.EnrollmentToken != "" {
		t.Fatalf("state identity %+v %v", st, err)
	}
	// Restarted, the agent needs no token.
	r.stop()
	r.startAgentWith(t, func(c *Config) { c.Controller, c.Token, c.Hostname, c.IdentityFile = "", "", "", file })
	r.stop()

	// Reinstalled: a blank state dir and a new attempt's token.
	r.state = t.TempDir()
	file = install("a2")
	r.startAgentWith(t, func(c *Config) { c.Controller, c.Token, c.Hostname, c.IdentityFile = "", "", "", file })
	waitEnrolled(t, r.state, file)
	nodes, _ = r.ctl.Nodes(ctx, "zone-a")
	if len(nodes) != 1 || nodes[0].ID != first || nodes[0].Hostname != "compute-0-0" {
		t.Fatalf("after reinstall: %+v, want the one node %s", nodes, first)
	}
}

// waitEnrolled waits for the agent to have written its identity to the
// state dir and dropped the token from the installer's file.
func waitEnrolled(t *testing.T, state, file string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		_, err := os.Stat(filepath.Join(state, identityFile))
		b, _ := os.ReadFile(file)
		if err == nil && !strings.Contains(string(b), "ibt1.") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node did not enroll; identity file:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
