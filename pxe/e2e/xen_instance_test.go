package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"ironbark/internal/lab"
)

// xenGuestWait guards one instance step (running, marker, terminated) on
// the installed Xen node against hangs; Xen under TCG, not a timing.
const xenGuestWait = 8 * time.Minute

// awsCLI runs the AWS CLI (Debian's v2 where installed) in the lab
// namespace with the admin's eucarc from the controller's data dir.
func awsCLI(t *testing.T, n *lab.LabNet, data, home string, args ...string) (string, error) {
	t.Helper()
	bin := "aws"
	if _, err := os.Stat("/usr/bin/aws"); err == nil {
		bin = "/usr/bin/aws"
	}
	// --endpoint-url: Debian 12's AWS CLI v2 (2.9) predates AWS_ENDPOINT_URL.
	script := ". " + filepath.Join(data, "credentials", "admin", "eucarc") + ` && exec "$0" --endpoint-url "$EC2_URL" "$@"`
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := n.NS.Command(ctx, "sh", append([]string{"-c", script, bin}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+home, "AWS_PAGER=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("aws %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// runXenInstance is the end of issue 8's story on the installed node:
// the cloud kernel (EKI) and a busybox ramdisk (ERI) registered with
// `ironbark image import`, run with the AWS CLI as a Xen PV guest that
// takes its address from the agent's DHCP, reads its metadata and prints
// both on the console GetConsoleOutput returns; terminate leaves nothing.
func runXenInstance(t *testing.T, n *lab.LabNet, ironbark, data, work string, k *lab.Kernel, sshNode func(string) string) {
	t.Helper()
	home := filepath.Join(work, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	initrd := lab.XenGuestInitramfs(t, work, k)
	disk := filepath.Join(work, "blank.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	id := func(out string) string {
		m := regexp.MustCompile(`\be[kmr]i-[0-9a-f]{8,}\b`).FindAllString(out, -1)
		if len(m) == 0 {
			t.Fatalf("no image id in %q", out)
		}
		return m[len(m)-1]
	}
	eki := id(ironbarkCmd(t, ironbark, "image", "import", k.Vmlinuz, "--kind", "kernel", "--name", "cloud-kernel", "--public", "--data-dir", data))
	eri := id(ironbarkCmd(t, ironbark, "image", "import", initrd, "--kind", "ramdisk", "--name", "xen-guest", "--public", "--data-dir", data))
	emi := id(ironbarkCmd(t, ironbark, "image", "import", disk, "--name", "blank", "--kernel", eki, "--ramdisk", eri, "--public", "--data-dir", data))

	aws := func(args ...string) string {
		t.Helper()
		out, err := awsCLI(t, n, data, home, args...)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	out := aws("ec2", "run-instances", "--image-id", emi, "--instance-type", "m1.small",
		"--query", "Instances[0].InstanceId", "--output", "text")
	inst := regexp.MustCompile(`\bi-[0-9a-f]{8,}\b`).FindString(out)
	if inst == "" {
		t.Fatalf("run-instances: no instance id in %q", out)
	}
	t.Logf("$ aws ec2 run-instances --image-id %s --instance-type m1.small\n%s", emi, out)
	t.Cleanup(func() {
		if t.Failed() {
			if sshNode != nil {
				t.Logf("node logs:\n%s", sshNode("tail -n 60 /var/log/libvirt/libxl/libxl-driver.log; journalctl -b --no-pager -u libvirtd -u ironbark-node -u xen | tail -n 80; xl list; ps axf | tail -n 40"))
			}
			out, _ := awsCLI(t, n, data, home, "ec2", "describe-instances", "--instance-ids", inst, "--output", "json")
			t.Logf("describe-instances:\n%s", out)
		}
	})
	state := func() (string, string) {
		f := strings.Fields(aws("ec2", "describe-instances", "--instance-ids", inst,
			"--query", "Reservations[].Instances[].[State.Name,PrivateIpAddress,StateReason.Message]", "--output", "text"))
		for len(f) < 3 {
			f = append(f, "")
		}
		return f[0], f[1]
	}
	deadline := time.Now().Add(xenGuestWait)
	var ip string
	for {
		st, addr := state()
		if st == "running" {
			ip = addr
			break
		}
		if st == "terminated" || st == "shutting-down" || time.Now().After(deadline) {
			t.Fatalf("%s: %s, want running", inst, st)
		}
		time.Sleep(3 * time.Second)
	}
	var con string
	for deadline = time.Now().Add(xenGuestWait); ; {
		con = aws("ec2", "get-console-output", "--instance-id", inst, "--output", "text")
		if strings.Contains(con, lab.XenGuestMarker) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q not in get-console-output; tail:\n%s", inst, lab.XenGuestMarker, tail(con, 30))
		}
		time.Sleep(5 * time.Second)
	}
	if !strings.Contains(con, "INSTANCE-ID="+inst) || !strings.Contains(con, "IP="+ip) {
		t.Fatalf("the guest did not report IP=%s INSTANCE-ID=%s (DHCP or metadata); console tail:\n%s", ip, inst, tail(con, 30))
	}
	t.Logf("instance %s running at %s on the installed Xen node; console tail:\n%s", inst, ip, tail(con, 8))
	if sshNode != nil {
		// Starts libxl gave up on (the agent retried them), for the record.
		t.Logf("the agent's retries:\n%s", sshNode("journalctl -b --no-pager -u ironbark-node | grep -E 'will retry' | cut -c1-600; true"))
	}

	aws("ec2", "terminate-instances", "--instance-ids", inst)
	for deadline = time.Now().Add(xenGuestWait); ; {
		if st, _ := state(); st == "terminated" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never terminated", inst)
		}
		time.Sleep(3 * time.Second)
	}
	if sshNode != nil {
		left := strings.Fields(sshNode("virsh -c xen:///system list --all --name | grep -c " + inst +
			"; ls /var/lib/ironbark-node/instances/ /var/log/xen/console/ | grep -c " + inst + "; true"))
		if len(left) != 2 || left[0] != "0" || left[1] != "0" {
			t.Fatalf("after terminate the node still has the domain or files of %s (domains, files): %q", inst, left)
		}
	}
}

// nodeShell returns a function that runs a shell command on the
// installed node as root over SSH (the key in ssh_authorized_keys),
// from the lab namespace.
func nodeShell(t *testing.T, n *lab.LabNet, key, addr string) func(string) string {
	return func(cmd string) string {
		// sshd may start after the agent has enrolled: retry while ssh
		// itself fails (exit 255).
		for try := 0; ; try++ {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			out, err := n.NS.Command(ctx, "ssh", "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
				"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20", "root@"+addr, cmd).CombinedOutput()
			cancel()
			var ee *exec.ExitError
			if err != nil && errors.As(err, &ee) && ee.ExitCode() == 255 && try < 20 {
				time.Sleep(5 * time.Second)
				continue
			}
			if err != nil {
				t.Logf("ssh %s %q: %v", addr, cmd, err)
			}
			return string(out)
		}
	}
}
