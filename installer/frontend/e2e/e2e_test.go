package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"

	"ironbark/images/iso"
	"ironbark/installer"
	"ironbark/installer/frontend"
	"ironbark/installer/frontend/frontendtest"
	"ironbark/internal/lab"
	"ironbark/pxe"
)

// buildStatic builds a command of this module without cgo.
func buildStatic(t testing.TB, pkg, out string, flags ...string) {
	t.Helper()
	cmd := exec.Command("go", append(append([]string{"build"}, flags...), "-o", out, pkg)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// console follows a serial log file.
type console struct{ path string }

func (c console) text() string { b, _ := os.ReadFile(c.path); return string(b) }

// await waits for s on the console, failing with the console's tail.
func (c console) await(t testing.TB, qemu *lab.Process, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(c.text(), s) {
		if strings.Contains(c.text(), "FRONTEND INSTALL FAILED") || strings.Contains(c.text(), "IRONBARK-FRONTEND-FAILED") {
			t.Fatalf("failed on the console:\n%s\n...\n%s", installerLines(c.text()), tail(c.text(), 20))
		}
		if time.Now().After(deadline) {
			t.Fatalf("console never showed %q; qemu: %s\nconsole:\n%s", s, qemu.Output(), tail(c.text(), 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// installerLines are the installer's own messages on the console.
func installerLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "ironbark-installer:") || strings.Contains(l, "level=") || strings.Contains(l, "IRONBARK") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestISOInstallsFrontend: ISO boot → unattended install onto a blank
// virtio disk → reboot from the disk → the frontend's EC2 endpoint
// answers DescribeAvailabilityZones on the public bridge.
func TestISOInstallsFrontend(t *testing.T) {
	isoPath := buildMedia(t)
	t.Run("bios", func(t *testing.T) {
		installAndAnswer(t, isoPath, frontendtest.BlankDisk(t, t.TempDir(), 1536<<20), bootBIOS)
	})
	t.Run("uefi", func(t *testing.T) {
		installAndAnswer(t, isoPath, frontendtest.BlankDisk(t, t.TempDir(), 1536<<20), bootUEFI)
	})
}

// buildMedia builds the frontend ISO: the installer initramfs, the lab
// frontend appliance, the rolls and the answer file on it.
func buildMedia(t testing.TB) string {
	lab.Require(t, "qemu-system-x86_64", "ip", "go", "syslinux", "xorriso", "grub-mkimage", "debugfs")
	dir := t.TempDir()
	ironbarkBin, installerBin := filepath.Join(dir, "ironbark"), filepath.Join(dir, "ironbark-installer")
	buildStatic(t, "ironbark/cmd/ironbark", ironbarkBin)
	buildStatic(t, "ironbark/cmd/ironbark-installer", installerBin, "-tags", "frontend") // the ISO's, with the frontend installer
	k := lab.GuestKernel(t)
	image := frontendtest.LabFrontendImage(t, dir, k, ironbarkBin)

	initrd := filepath.Join(dir, "installer.img")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	if err := pxe.BuildInstallerInitramfs(f, installerBin, k.ModulesDir()); err != nil {
		t.Fatal(err)
	}
	f.Close()

	a := frontendtest.Answers("/dev/vda")
	b, err := frontend.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	answers := filepath.Join(dir, "answers.yaml")
	if err := os.WriteFile(answers, b, 0o644); err != nil {
		t.Fatal(err)
	}
	rolls := filepath.Join(dir, "rolls")
	for _, r := range a.Rolls {
		if err := os.MkdirAll(filepath.Join(rolls, r), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rolls, r, "roll.xml"), []byte("<roll name='"+r+"'/>\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	isoPath := filepath.Join(dir, "ironbark.iso")
	if _, err := iso.Build(context.Background(), isoPath, installer.ISOSpec(
		iso.Spec{Kernel: k.Vmlinuz, Initrd: initrd, Cmdline: "console=ttyS0 panic=-1", Rolls: rolls}, image, answers)); err != nil {
		t.Fatal(err)
	}
	return isoPath
}

type bootMode int

const (
	bootBIOS bootMode = iota // the ISO once, then the disk
	bootUEFI                 // OVMF: the ISO with -no-reboot, then the disk alone
	bootDisk                 // the installed disk alone (BIOS)
)

// installAndAnswer boots the ISO on a machine with a blank virtio disk and
// a NIC on each of two bridges, waits for the unattended install and the
// reboot into the installed frontend, and asks its EC2 endpoint for the
// zones. BIOS boots the CD once, then the disk; UEFI installs in a first
// run that ends at the installer's reboot (-no-reboot) and boots the disk
// alone in a second.
func installAndAnswer(t testing.TB, isoPath, target string, mode bootMode) {
	dir := t.TempDir()
	uefi := mode == bootUEFI

	// The public network: a bridge with the "router" 192.0.2.1 in a
	// namespace; the private network: its own bridge.
	ns := lab.NewNetNS(t)
	pub := ns.Bridge(t, netip.MustParsePrefix("192.0.2.1/24"))
	priv := ns.Bridge(t, netip.Prefix{})
	tapPub, tapPriv := ns.Tap(t, pub), ns.Tap(t, priv)
	serial := filepath.Join(dir, "serial.log")
	args := []string{"-accel", "tcg", "-m", "1024", "-display", "none", "-no-user-config",
		"-serial", "file:" + serial, "-monitor", "none",
		"-drive", "file=" + target + ",if=virtio,format=raw",
		"-netdev", "tap,id=n0,ifname=" + tapPub + ",script=no,downscript=no", "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:1f:00:01",
		"-netdev", "tap,id=n1,ifname=" + tapPriv + ",script=no,downscript=no", "-device", "virtio-net-pci,netdev=n1,mac=52:54:00:1f:00:02"}
	con := console{serial}
	var qemu *lab.Process
	switch mode {
	case bootDisk:
		qemu = ns.Start(t, "qemu-system-x86_64", args...)
	case bootBIOS:
		qemu = ns.Start(t, "qemu-system-x86_64", append(args, "-cdrom", isoPath, "-boot", "once=d")...)
		con.await(t, qemu, "FRONTEND INSTALLED", 10*time.Minute)
	default:
		const code, varsTemplate = "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"
		if _, err := os.Stat(code); err != nil {
			lab.Missing(t, "OVMF (apt-get install ovmf): "+err.Error())
		}
		vars := filepath.Join(dir, "OVMF_VARS.fd")
		b, err := os.ReadFile(varsTemplate)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vars, b, 0o644); err != nil {
			t.Fatal(err)
		}
		// i440fx, as BIOS: the cloud kernel has no AHCI driver for a q35 CD drive.
		args = append(args, "-drive", "if=pflash,format=raw,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,file="+vars)
		installer := ns.Start(t, "qemu-system-x86_64", append(args, "-cdrom", isoPath, "-no-reboot")...)
		con.await(t, installer, "FRONTEND INSTALLED", 10*time.Minute)
		// -no-reboot: qemu ends at the installer's reboot.
		for deadline := time.Now().Add(2 * time.Minute); syscall.Kill(installer.Cmd.Process.Pid, 0) == nil; {
			if time.Now().After(deadline) {
				t.Fatalf("qemu did not end at the installer's reboot:\n%s", tail(con.text(), 20))
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err := os.WriteFile(serial, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		qemu = ns.Start(t, "qemu-system-x86_64", args...)
	}
	con.await(t, qemu, frontendtest.UpMarker, 5*time.Minute)
	if uefi && !strings.Contains(con.text(), "UEFI") && !strings.Contains(con.text(), "EFI") {
		t.Fatalf("the second boot shows no sign of UEFI:\n%s", tail(con.text(), 30))
	}

	// The admin's EC2 keys, as the installer wrote them on the data partition.
	creds := readDataFile(t, target, "/credentials/admin/credentials")
	var ak, sk string
	sc := bufio.NewScanner(strings.NewReader(creds))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " = ")
		switch k {
		case "aws_access_key_id":
			ak = v
		case "aws_secret_access_key":
			sk = v
		}
	}
	if ak == "" || sk == "" {
		t.Fatalf("no admin keys in:\n%s", creds)
	}
	// EC2 from the public network: dial inside the namespace.
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(readDataFile(t, target, "/credentials/admin/ca.pem"))) {
		t.Fatal("no CA certificate in credentials/admin/ca.pem")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}}
	ec2 := sdk.New(sdk.Options{Region: "ironbark", BaseEndpoint: aws.String("https://192.0.2.10:8773/"), HTTPClient: client,
		Credentials: credentials.NewStaticCredentialsProvider(ak, sk, "")})
	var zones []string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := ec2.DescribeAvailabilityZones(ctx, &sdk.DescribeAvailabilityZonesInput{})
		cancel()
		if err == nil {
			for _, z := range out.AvailabilityZones {
				zones = append(zones, aws.ToString(z.ZoneName))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("DescribeAvailabilityZones: %v\nconsole:\n%s", err, tail(con.text(), 30))
		}
		time.Sleep(time.Second)
	}
	if len(zones) != 1 || zones[0] != "cluster0" {
		t.Fatalf("zones %v, want [cluster0]", zones)
	}
	if mode != bootDisk {
		t.Logf("console:\n%s", installerLines(con.text()))
	}
	stopQemu(qemu)
}

// stopQemu ends a VM now (its namespace stays until the test ends), so a
// disk is never used by two VMs.
func stopQemu(p *lab.Process) {
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGTERM)
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(p.Cmd.Process.Pid, 0) == nil && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
}

// BenchmarkISOToEC2 times ISO boot → unattended install → reboot → the
// frontend answering EC2, against the floor: dd of the same appliance
// image onto a disk plus the installed frontend's boot to its first EC2
// answer (one reboot). Metric: iso/(dd+boot); the goal is at most 1.5.
func BenchmarkISOToEC2(b *testing.B) {
	isoPath := buildMedia(b)
	image := filepath.Join(filepath.Dir(isoPath), "frontend.img")
	var full, floor time.Duration
	for range b.N {
		target := frontendtest.BlankDisk(b, b.TempDir(), 1536<<20)
		start := time.Now()
		installAndAnswer(b, isoPath, target, bootBIOS)
		full += time.Since(start)

		ddTarget := frontendtest.BlankDisk(b, b.TempDir(), 1536<<20)
		start = time.Now()
		if out, err := exec.Command("dd", "if="+image, "of="+ddTarget, "bs=1M", "conv=notrunc,fsync", "status=none").CombinedOutput(); err != nil {
			b.Fatalf("dd: %v %s", err, out)
		}
		dd := time.Since(start)
		start = time.Now()
		installAndAnswer(b, isoPath, target, bootDisk)
		floor += dd + time.Since(start)
	}
	b.ReportMetric(full.Seconds()/float64(b.N), "iso-s/op")
	b.ReportMetric(floor.Seconds()/float64(b.N), "dd+boot-s/op")
	b.ReportMetric(full.Seconds()/floor.Seconds(), "iso/(dd+boot)")
}

// readDataFile reads a file from the installed disk's data partition.
func readDataFile(t testing.TB, disk, p string) string {
	t.Helper()
	out, err := exec.Command("sfdisk", "--dump", disk).Output()
	if err != nil {
		t.Fatalf("sfdisk: %v", err)
	}
	var start, size string
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.Contains(l, `name="ironbark-data"`) {
			continue
		}
		for _, f := range strings.Split(l, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
			k = strings.TrimSpace(k[strings.LastIndex(k, " ")+1:])
			switch k {
			case "start":
				start = strings.TrimSpace(v)
			case "size":
				size = strings.TrimSpace(v)
			}
		}
	}
	part := filepath.Join(t.TempDir(), "data.img")
	if b, err := exec.Command("dd", "if="+disk, "of="+part, "bs=512", "skip="+start, "count="+size, "status=none").CombinedOutput(); err != nil {
		t.Fatalf("dd: %v %s", err, b)
	}
	b, err := exec.Command("debugfs", "-R", "cat "+p, part).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", p, err)
	}
	return string(b)
}
