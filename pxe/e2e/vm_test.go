package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ironbark/internal/lab"
)

// vm is a blank qemu machine (TCG) with a virtio NIC on the lab bridge
// and a virtio disk, booting from the network first.
type vm struct {
	Name string
	MAC  string
	UEFI bool
	Disk string
	Vars string // UEFI variable store
	Tap  string
	net  *lab.LabNet
	dir  string
	boot int
	proc *proc
	// Console is the current boot's serial console log.
	Console string
	// Machine replaces the default memory and CPU arguments (-m 512
	// -smp 1), e.g. with LAB.md's flags for a Xen host.
	Machine []string
}

func newVM(t *testing.T, n *lab.LabNet, dir, name, mac string, uefi bool) *vm {
	t.Helper()
	return newVMDisk(t, n, dir, name, mac, uefi, 256<<20)
}

// newVMDisk is newVM with a blank disk of size bytes.
func newVMDisk(t *testing.T, n *lab.LabNet, dir, name, mac string, uefi bool, size int64) *vm {
	t.Helper()
	v := &vm{Name: name, MAC: mac, UEFI: uefi, net: n, dir: dir, Disk: filepath.Join(dir, name+".disk")}
	if err := os.WriteFile(v.Disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(v.Disk, size); err != nil {
		t.Fatal(err)
	}
	if uefi {
		v.Vars = filepath.Join(dir, name+".vars.fd")
		b, err := os.ReadFile("/usr/share/OVMF/OVMF_VARS_4M.fd")
		if err != nil {
			t.Fatalf("OVMF vars: %v", err)
		}
		if err := os.WriteFile(v.Vars, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v.Tap = n.NS.Tap(t, n.Bridge)
	return v
}

// Start powers the machine on (again); its console goes to a new file.
func (v *vm) Start(t *testing.T) {
	t.Helper()
	v.boot++
	v.Console = filepath.Join(v.dir, fmt.Sprintf("%s.console.%d.log", v.Name, v.boot))
	nic := "virtio-net-pci,netdev=n0,mac=" + v.MAC
	blk := "virtio-blk-pci,drive=d0"
	machine := v.Machine
	if machine == nil {
		machine = []string{"-m", "512", "-smp", "1"}
	}
	args := append([]string{"-accel", "tcg", "-machine", "pc"}, machine...)
	args = append(args, "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
		"-serial", "file:"+v.Console,
		"-netdev", "tap,id=n0,ifname="+v.Tap+",script=no,downscript=no",
		"-drive", "file="+v.Disk+",if=none,id=d0,format=raw")
	if v.UEFI {
		args = append(args,
			"-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
			"-drive", "if=pflash,format=raw,file="+v.Vars,
			// The firmware's own network boot entries (PXE and HTTP boot
			// over its IP stacks) would run, and time out, between iPXE
			// leaving with `exit` and the disk entry: this machine boots
			// from the network with iPXE only, then from its disk.
			"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no",
			"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no",
			"-fw_cfg", "name=opt/org.tianocore/IPv4Support,string=no",
			"-fw_cfg", "name=opt/org.tianocore/IPv6Support,string=no")
		nic += ",bootindex=1"
		blk += ",bootindex=2"
	} else {
		args = append(args, "-boot", "n")
	}
	args = append(args, "-device", nic, "-device", blk)
	v.proc = startProc(t, fmt.Sprintf("%s.qemu.%d", v.Name, v.boot), v.net.NS.Command(context.Background(), "qemu-system-x86_64", args...), v.dir)
}

// WaitConsole waits for s on the serial console and returns the line.
func (v *vm) WaitConsole(t *testing.T, s string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(v.Console)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, s) {
				return strings.TrimSpace(l)
			}
		}
		select {
		case <-v.proc.done:
			b, _ = os.ReadFile(v.Console)
			if !strings.Contains(string(b), s) {
				t.Fatalf("%s powered off before %q on its console; console tail:\n%s\nqemu: %s", v.Name, s, tail(string(b), 60), v.proc.tail(10))
			}
			continue
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q not on its console within %v; console tail:\n%s", v.Name, s, timeout, tail(string(b), 60))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
