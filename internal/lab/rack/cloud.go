package rack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The admin's credentials as the frontend keeps them.
const frontendCreds = "/var/lib/ironbark/credentials/admin"

// stepCloud fetches the admin's credentials from the frontend, rewrites
// their CA path for this host, prints the eucarc and the AWS CLI
// commands, and with Instance runs one.
func (r *runner) stepCloud(ctx context.Context) error {
	r.creds = filepath.Join(r.work, "credentials")
	if err := os.MkdirAll(r.creds, 0o700); err != nil {
		return err
	}
	for _, f := range []string{"eucarc", "ca.pem", "config", "credentials"} {
		if err := r.fetch(ctx, frontendCreds+"/"+f, filepath.Join(r.creds, f)); err != nil {
			return fmt.Errorf("fetch %s: %w", f, err)
		}
	}
	// The files name the CA where the frontend keeps it.
	for _, f := range []string{"eucarc", "config"} {
		p := filepath.Join(r.creds, f)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), frontendCreds, r.creds)), 0o600); err != nil {
			return err
		}
	}
	eucarc, err := os.ReadFile(filepath.Join(r.creds, "eucarc"))
	if err != nil {
		return err
	}
	r.say("  eucarc from the frontend (%s:%s), its CA path made this host's:\n%s", r.cfg.frontendAddr(), frontendCreds+"/eucarc", indent(string(eucarc)))
	prefix := ""
	if !r.cfg.HostRoute {
		prefix = "ip netns exec " + r.ns.Name + " "
	}
	r.say(`  in another shell:
    . %s/eucarc
    export AWS_PAGER=""
    %saws ec2 describe-availability-zones --endpoint-url $EC2_URL --zone-names verbose --output text
    %saws ec2 run-instances --endpoint-url $EC2_URL --image-id EMI --instance-type m1.small
    %saws ec2 describe-instances --endpoint-url $EC2_URL --query 'Reservations[].Instances[].[InstanceId,State.Name,PrivateIpAddress]' --output text
    %saws ec2 get-console-output --endpoint-url $EC2_URL --instance-id i-... --output text`, r.creds, prefix, prefix, prefix, prefix)
	out, err := r.aws(ctx, "ec2", "describe-availability-zones", "--zone-names", "verbose", "--output", "text")
	if err != nil {
		return err
	}
	r.say("  $ aws ec2 describe-availability-zones --zone-names verbose --output text\n%s", indent(out))
	if !r.cfg.Instance {
		return nil
	}
	var ns []nodeRow
	if err := r.frontendJSON(ctx, "node list", &ns); err != nil {
		return err
	}
	cores := 0
	for _, n := range ns {
		cores += n.Cores
	}
	if cores == 0 {
		err := fmt.Errorf("no instance: the nodes offer 0 cores (node list: %+v)", ns)
		if r.cfg.Check {
			return err
		}
		r.say("  %v; the rack stays up without one", err)
		return nil
	}
	return r.runInstance(ctx)
}

// aws runs the AWS CLI with the fetched credentials against the
// frontend.
func (r *runner) aws(ctx context.Context, args ...string) (string, error) {
	all := append([]string{"--endpoint-url", fmt.Sprintf("https://%s:8773/", r.cfg.frontendAddr())}, args...)
	cmd := r.hostCommand(ctx, awsCLI(), all...)
	// The fetched files alone say who calls: none of the caller's AWS_*
	// settings.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "AWS_CONFIG_FILE="+filepath.Join(r.creds, "config"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(r.creds, "credentials"), "AWS_CA_BUNDLE="+filepath.Join(r.creds, "ca.pem"),
		"AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("aws %s: %v: %s", strings.Join(args, " "), err, tailLines(string(out), 20))
	}
	return string(out), nil
}

// awsCLI is Debian's AWS CLI v2 when installed, else whatever aws is on
// PATH.
func awsCLI() string {
	if _, err := os.Stat("/usr/bin/aws"); err == nil {
		return "/usr/bin/aws"
	}
	return "aws"
}

// status prints a live line (machines, nodes, instances) until ctx ends.
func (r *runner) status(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		line := r.statusLine(ctx)
		r.mu.Lock()
		fmt.Fprintf(r.cfg.Out, "\r\033[K%s", line)
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			r.say("")
			return
		case <-t.C:
		}
	}
}

func (r *runner) statusLine(ctx context.Context) string {
	qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	vms := 0
	for _, v := range append([]*vm{r.frontend}, r.nodes...) {
		if v != nil && v.running() {
			vms++
		}
	}
	nodes := "?"
	var ns []nodeRow
	if err := r.frontendJSON(qctx, "node list", &ns); err == nil {
		var parts []string
		for _, n := range ns {
			parts = append(parts, fmt.Sprintf("%s %s %dc/%dMiB", n.Hostname, n.State, n.Cores, n.MemoryMiB))
		}
		nodes = fmt.Sprintf("%d (%s)", len(ns), strings.Join(parts, ", "))
	}
	inst := "?"
	if out, err := r.aws(qctx, "ec2", "describe-instances", "--query", "Reservations[].Instances[].State.Name", "--output", "text"); err == nil {
		counts := map[string]int{}
		for _, s := range strings.Fields(out) {
			counts[s]++
		}
		inst = fmt.Sprintf("%d running, %d pending, %d terminated", counts["running"], counts["pending"], counts["terminated"])
	}
	return fmt.Sprintf("%s  up %s  VMs %d/%d  nodes %s  instances %s", time.Now().Format("15:04:05"),
		time.Since(r.start).Round(time.Second), vms, 1+len(r.nodes), nodes, inst)
}
