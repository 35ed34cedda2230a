package appliance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ironbark/images/disk"
	"ironbark/roll"
)

func fakeBoot(t *testing.T, files ...string) string {
	t.Helper()
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "boot"), 0o755)
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(tree, "boot", f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return tree
}

func TestGeneratedGrubConfig(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
		attrs map[string]string
		want  []string
	}{
		{"linux", []string{"vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64", "initrd.img-6.1.0-9-amd64", "initrd.img-6.1.0-10-amd64"}, nil, []string{
			"linux /boot/vmlinuz-6.1.0-10-amd64 root=UUID=${ironbark_root_uuid} " + DefaultKernelArgs + "\n",
			"initrd /boot/initrd.img-6.1.0-10-amd64\n"}},
		{"linux args", []string{"vmlinuz-6.1.0-9-amd64"}, map[string]string{"kernel_args": "quiet"}, []string{
			"linux /boot/vmlinuz-6.1.0-9-amd64 root=UUID=${ironbark_root_uuid} quiet\n"}},
		{"xen", []string{"vmlinuz-6.1.0-9-amd64", "initrd.img-6.1.0-9-amd64", "xen-4.17-amd64.gz", "xen-4.17-amd64.efi"},
			map[string]string{"xen_dom0_mem": "2048M"}, []string{
				"multiboot2 /boot/xen-4.17-amd64.gz dom0_mem=2048M,max:2048M dom0_max_vcpus=2 console=com1,vga com1=115200\n",
				"module2 /boot/vmlinuz-6.1.0-9-amd64 root=UUID=${ironbark_root_uuid} " + DefaultDom0Args + "\n",
				"module2 /boot/initrd.img-6.1.0-9-amd64\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree := fakeBoot(t, tc.files...)
			p := &roll.Profile{Appliance: "compute", Attrs: tc.attrs}
			got, err := bootConfig(tree, p)
			if err != nil || got != "generated" {
				t.Fatalf("bootConfig = %q, %v", got, err)
			}
			b, _ := os.ReadFile(filepath.Join(tree, GrubConfigPath))
			for _, w := range tc.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("grub.cfg lacks %q:\n%s", w, b)
				}
			}
		})
	}
	// A profile's own grub.cfg is left alone; no kernel and none is an error.
	tree := fakeBoot(t)
	if _, err := bootConfig(tree, &roll.Profile{Appliance: "x"}); err == nil || !strings.Contains(err.Error(), "no kernel") {
		t.Errorf("no kernel: %v", err)
	}
	os.MkdirAll(filepath.Join(tree, "boot/grub"), 0o755)
	os.WriteFile(filepath.Join(tree, GrubConfigPath), []byte("mine"), 0o644)
	if got, err := bootConfig(tree, &roll.Profile{Appliance: "x"}); got != "profile" || err != nil {
		t.Errorf("own grub.cfg: %q %v", got, err)
	}
}

func TestFstab(t *testing.T) {
	tree := t.TempDir()
	ids := disk.DiskIDs{RootFSUUID: "r-uuid", ESPPartUUID: "e-part"}
	if err := writeFstab(tree, ids); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(tree, "etc/fstab"))
	for _, w := range []string{"UUID=r-uuid / ext4", "PARTUUID=e-part /boot/efi vfat"} {
		if !strings.Contains(string(b), w) {
			t.Errorf("fstab lacks %q:\n%s", w, b)
		}
	}
	// A profile that mounts / and /boot/efi itself keeps its lines alone.
	own := "LABEL=x / ext4 defaults 0 1\nLABEL=y /boot/efi vfat defaults 0 2"
	os.WriteFile(filepath.Join(tree, "etc/fstab"), []byte(own), 0o644)
	if err := writeFstab(tree, ids); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(tree, "etc/fstab")); string(b) != own {
		t.Errorf("fstab changed:\n%s", b)
	}
}
