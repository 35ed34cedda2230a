package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"ironbark/images/blobstore"
	"ironbark/internal/datadir"
	"ironbark/internal/lab"
)

const macXen = "52:54:00:1b:00:10"

// Guards against hangs on two busy cores, not timings: Xen under TCG.
const (
	xenInstallWait = 10 * time.Minute
	xenEnrollWait  = 15 * time.Minute
)

// xenLabKernelArgs are the installed dom0's kernel arguments in the lab:
// the appliance's, with hvc0 (Xen's serial console, which the test
// reads) as the console systemd writes to and the journal forwarded to
// it, so the console log has every service's messages (the agent's too).
const xenLabKernelArgs = "console=tty0 console=hvc0 ro net.ifnames=0 systemd.journald.forward_to_console=1"

// TestXenComputeInstall is issue 8's end-to-end test: the built-in
// compute appliance (Debian, Xen, libvirt, ironbark-node) is built (its
// base cached), registered, and PXE-installed by `ironbark pxe` during
// discovery into a blank qemu with LAB.md's Xen CPU flags; it reboots
// from its own disk into Xen dom0, and its agent enrolls with the
// controller from its lease address: `node list` shows it up with the
// cores and memory libvirt's Xen driver reports and the disk its grown
// root offers. Then an instance run with the AWS CLI lands on it as a
// Xen PV guest (runXenInstance). The image is built before any SSH key
// is set and carries none; root on the node takes the keys set in
// ssh_authorized_keys afterwards, which the installer wrote from its
// profile (the test looks at dom0 through them).
func TestXenComputeInstall(t *testing.T) {
	lab.Require(t, "qemu-system-x86_64", "ip", "go", "mmdebstrap", "unshare", "chroot", "grub-mkimage", "apt-get", "sfdisk", "debugfs",
		"ssh", "ssh-keygen", "aws")
	if _, err := os.Stat("/usr/lib/ipxe/undionly.kpxe"); err != nil {
		lab.Missing(t, "/usr/lib/ipxe/undionly.kpxe (ipxe package)")
	}
	k := lab.GuestKernel(t)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	ironbark, installer := buildBinaries(t, work)
	// The appliance's roll file bin/ironbark-node comes from <work>/bin.
	_, file, _, _ := runtime.Caller(0)
	agent := exec.Command("go", "build", "-o", filepath.Join(work, "bin", "ironbark-node"), "./cmd/ironbark-node")
	agent.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if out, err := agent.CombinedOutput(); err != nil {
		t.Fatalf("go build ironbark-node: %v\n%s", err, out)
	}

	ironbarkCmd(t, ironbark, "cluster", "add", "c1", "--data-dir", data)
	ironbarkCmd(t, ironbark, "attr", "set", "kernel_args", xenLabKernelArgs, "--appliance", "compute", "--data-dir", data)
	// The image is built before the frontend has any admin key (as the
	// one the ISO carries is): root's keys reach the node only through
	// the attribute, set after the build and carried by its install
	// profile.
	out := ironbarkCmd(t, ironbark, "appliance", "build", "compute", "--data-dir", data,
		"--cache", filepath.Join(lab.CacheDir(), "appliance"), "--source-dir", work)
	if keys := imageRootKeys(t, data, out); keys != "" {
		t.Fatalf("the compute image carries root keys %q: the test needs one without", keys)
	}
	key, pub := lab.SSHKeyPair(t, work, "admin@ironbark-e2e")
	const otherKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f ops@elsewhere"
	ironbarkCmd(t, ironbark, "attr", "set", "ssh_authorized_keys", pub+"\n"+otherKey, "--data-dir", data)
	ironbarkCmd(t, ironbark, "pxe", "setup", "--data-dir", data, "--kernel", k.Vmlinuz,
		"--modules", k.ModulesDir(), "--installer", installer)

	n := lab.NewLabNet(t, "")
	addr := n.Addr.Addr().String()
	ctl := startProc(t, "controller", n.NS.Command(context.Background(), ironbark, "controller", "--data-dir", data,
		"--listen", net.JoinHostPort(addr, "8773"), "--node-listen", net.JoinHostPort(addr, "8774")), work)
	ctl.WaitLine(t, "controller started", 60*time.Second)
	pxe := startProc(t, "pxe", n.NS.Command(context.Background(), ironbark, "pxe", "--data-dir", data, "--interface", n.Bridge,
		"--kernel-args", labInstallerArgs, "--on-fail", "poweroff",
		"--controller-url", "https://"+net.JoinHostPort(addr, "8774")), work)
	pxe.WaitLine(t, "pxe serving", 30*time.Second)
	disc := startProc(t, "discover", exec.Command(ironbark, "discover", "--appliance", "compute", "--cluster", "c1",
		"--no-tui", "--data-dir", data), work)
	disc.WaitLine(t, "discovering compute appliances", 30*time.Second)

	// 8 GiB (sparse): the installer grows the root partition to the disk
	// and systemd the filesystem, so the node offers m1.small's 5 GiB.
	node := newVMDisk(t, n, work, "xen", macXen, false, 8<<30)
	node.Machine = []string{"-cpu", "qemu64,+svm,+npt,+vme,x-force-features=on", "-m", "3072", "-smp", "2"}
	node.Start(t)
	line := disc.WaitLine(t, "mac="+macXen, 3*time.Minute)
	if !strings.Contains(line, "discovered compute-0-0 ") {
		t.Fatalf("Xen VM: %q, want compute-0-0", line)
	}
	node.WaitConsole(t, "ironbark-installer: install of compute-0-0 done", xenInstallWait)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(node.Console)
			t.Logf("node console tail:\n%s", tail(string(b), 120))
			t.Logf("controller tail:\n%s", ctl.tail(30))
		}
	})
	row := waitNode(t, ironbark, data, "compute-0-0", xenEnrollWait)
	t.Logf("node list: %s", row)
	if err := disc.Interrupt(t, 10*time.Second); err != nil {
		t.Fatalf("discover: %v\n%s", err, disc.tail(20))
	}
	nr := waitCapacity(t, ironbark, data, "compute-0-0", xenEnrollWait)
	t.Logf("node list --json: %+v", nr)
	if nr.DiskGiB < 5 {
		t.Fatalf("the node offers %d GiB of disk on an 8 GiB disk: its root was not grown", nr.DiskGiB)
	}
	ip := regexp.MustCompile(`ip=(\S+)`).FindStringSubmatch(line)
	if ip == nil {
		t.Fatalf("discover: no ip= in %q", line)
	}
	sh := nodeShell(t, n, key, ip[1])
	if out := sh("xl info | grep -E 'nr_cpus|free_memory'"); !strings.Contains(out, "nr_cpus") {
		t.Fatalf("on the node, as root with the admin's key: %q", out)
	}
	// The installer wrote both keys of the attribute, private to root.
	want := "700 root\n600 root\n" + strings.TrimSpace(pub) + "\n" + otherKey + "\n"
	if out := sh("stat -c '%a %U' /root/.ssh /root/.ssh/authorized_keys; cat /root/.ssh/authorized_keys"); out != want {
		t.Fatalf("root's keys on the node:\n%s\nwant:\n%s", out, want)
	}
	runXenInstance(t, n, ironbark, data, work, k, sh)
}

// waitNode polls `ironbark node list` until host's row says up.
func waitNode(t *testing.T, bin, data, host string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := exec.Command(bin, "node", "list", "--data-dir", data).CombinedOutput()
		if err != nil {
			t.Fatalf("node list: %v\n%s", err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) > 3 && f[2] == host && f[3] == "up" {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node list never showed %s up; last:\n%s", host, out)
		}
		time.Sleep(2 * time.Second)
	}
}

// nodeListRow is a row of `ironbark node list --json`.
type nodeListRow struct {
	Hostname  string `json:"hostname"`
	State     string `json:"state"`
	Cores     int    `json:"cores"`
	MemoryMiB int    `json:"memoryMiB"`
	DiskGiB   int    `json:"diskGiB"`
	Review    string `json:"review"`
}

// waitCapacity polls `ironbark node list --json` until host is up with
// cores and memory.
func waitCapacity(t *testing.T, bin, data, host string, timeout time.Duration) nodeListRow {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := exec.Command(bin, "node", "list", "--json", "--data-dir", data).Output()
		if err != nil {
			t.Fatalf("node list --json: %v\n%s", err, out)
		}
		var rows []nodeListRow
		if err := json.Unmarshal(out, &rows); err != nil {
			t.Fatalf("node list --json: %v\n%s", err, out)
		}
		for _, r := range rows {
			if r.Hostname == host && r.State == "up" && r.Cores > 0 && r.MemoryMiB > 0 {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node list never showed %s up with cores and memory; last:\n%s", host, out)
		}
		time.Sleep(2 * time.Second)
	}
}

// imageRootKeys returns root's authorized_keys in the appliance image
// whose digest `appliance build` printed (its stdout's line, first in
// out), read from its ext4 root (the last partition) with debugfs; ""
// when it has none.
func imageRootKeys(t *testing.T, data, out string) string {
	t.Helper()
	first, _, _ := strings.Cut(out, "\n")
	digest, ok := strings.CutPrefix(strings.TrimSpace(first), "sha256:")
	if !ok {
		t.Fatalf("appliance build printed no digest first: %q", out)
	}
	blobs, err := blobstore.Open(datadir.Dir(data).Images())
	if err != nil {
		t.Fatal(err)
	}
	img := blobs.Path(blobstore.Digest("sha256:" + digest))
	js, err := exec.Command("sfdisk", "--json", img).Output()
	if err != nil {
		t.Fatalf("sfdisk --json %s: %v", img, err)
	}
	var table struct {
		PartitionTable struct {
			SectorSize int64 `json:"sectorsize"`
			Partitions []struct {
				Start int64 `json:"start"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(js, &table); err != nil || len(table.PartitionTable.Partitions) == 0 {
		t.Fatalf("sfdisk --json %s: %v\n%s", img, err, js)
	}
	ps := table.PartitionTable.Partitions
	off := ps[len(ps)-1].Start * max(table.PartitionTable.SectorSize, 512)
	res, err := exec.Command("debugfs", "-R", "cat /root/.ssh/authorized_keys", img+"?offset="+strconv.FormatInt(off, 10)).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs on %s: %v\n%s", img, err, res)
	}
	var keys []string
	for _, l := range strings.Split(string(res), "\n") {
		if strings.HasPrefix(l, "ssh-") || strings.HasPrefix(l, "ecdsa-") {
			keys = append(keys, l)
		}
	}
	if len(keys) == 0 && !strings.Contains(string(res), "File not found") {
		t.Fatalf("debugfs found no root filesystem at offset %d of %s:\n%s", off, img, res)
	}
	return strings.Join(keys, "\n")
}
