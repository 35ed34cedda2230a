package frontend_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"ironbark/controller/cluster"
	"ironbark/installer/frontend"
	"ironbark/installer/frontend/frontendtest"
	"ironbark/internal/lab"
	"ironbark/internal/store"
	"ironbark/roll"
)

// sfdiskPart is a partition as `sfdisk --json` shows it.
type sfdiskPart struct {
	Node  string `json:"node"`
	Start int64  `json:"start"`
	Size  int64  `json:"size"`
	Type  string `json:"type"`
	UUID  string `json:"uuid"`
	Name  string `json:"name"`
	Attrs string `json:"attrs"`
}

// Partitions reads a disk image's partition table with sfdisk.
func Partitions(t *testing.T, img string) (label string, parts []sfdiskPart) {
	t.Helper()
	out, err := exec.Command("sfdisk", "--json", img).Output()
	if err != nil {
		return "", nil
	}
	var v struct {
		PartitionTable struct {
			Label      string       `json:"label"`
			Partitions []sfdiskPart `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	return v.PartitionTable.Label, v.PartitionTable.Partitions
}

// extract copies a partition out of a disk image for e2fsck and debugfs.
func extract(t *testing.T, img string, p sfdiskPart) string {
	t.Helper()
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	out := filepath.Join(t.TempDir(), "part.img")
	dst, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, io.NewSectionReader(src, p.Start*512, p.Size*512)); err != nil {
		t.Fatal(err)
	}
	return out
}

func debugfsCat(t *testing.T, fsImg, p string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+p, fsImg).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", p, err)
	}
	return string(out)
}

func TestInstallOntoDiskImage(t *testing.T) {
	lab.Require(t, "sfdisk", "debugfs", "e2fsck", "mdir")
	dir := t.TempDir()
	img := frontendtest.Image(t, dir, frontendtest.ImageSpec{})
	target := frontendtest.BlankDisk(t, dir, 512<<20)
	a := frontendtest.Answers(target)
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	var reports []frontend.Progress
	// The medium's node installer (the ISO's /boot) becomes the PXE boot files.
	inst := t.TempDir()
	for n, c := range map[string]string{frontend.InstallerKernel: "node installer kernel", frontend.InstallerInitrd: "node installer initramfs"} {
		if err := os.WriteFile(filepath.Join(inst, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	err := frontend.Install(context.Background(), a, frontendtest.TwoNICs(), frontend.Medium{Image: frontend.Image{Path: img}, InstallerDir: inst}, log,
		func(p frontend.Progress) { reports = append(reports, p) })
	if err != nil {
		t.Fatalf("%v\n%s", err, logBuf.String())
	}
	// The log reads like the script the steps stand for.
	for _, s := range []string{"wipefs --all", "dd of=" + target, "mkfs.ext4 -L ironbark-data", "sgdisk --clear", "bs=440 count=1"} {
		if !strings.Contains(logBuf.String(), s) {
			t.Errorf("log lacks %q:\n%s", s, logBuf.String())
		}
	}
	if last := reports[len(reports)-1]; !last.Finished {
		t.Fatalf("last progress %+v", last)
	}
	var sawBytes bool
	for _, p := range reports {
		sawBytes = sawBytes || (p.Step == "write appliance" && p.Done > 0 && p.Total > 0 && p.Done <= p.Total)
	}
	if !sawBytes {
		t.Fatalf("no byte progress while writing the appliance: %+v", reports)
	}

	// Partitions: the image's ESP and root where the image has them, then the data partition.
	label, parts := Partitions(t, target)
	_, imgParts := Partitions(t, img)
	if label != "gpt" || len(parts) != 3 || len(imgParts) != 2 {
		t.Fatalf("partitions: %s %+v (image %+v)", label, parts, imgParts)
	}
	for i := range imgParts {
		p, q := parts[i], imgParts[i]
		if p.Start != q.Start || p.Size != q.Size || p.Type != q.Type || p.UUID != q.UUID || p.Attrs != q.Attrs {
			t.Errorf("partition %d: %+v, image has %+v", i+1, p, q)
		}
	}
	data := parts[2]
	if data.Name != "ironbark-data" || data.Type != "0FC63DAF-8483-4772-8E79-3D69D8477DE4" || data.Start*512 < imgParts[1].Start*512+imgParts[1].Size*512 {
		t.Fatalf("data partition %+v", data)
	}
	if end := (data.Start + data.Size) * 512; end > 511<<20 || end < 500<<20 {
		t.Errorf("data partition ends at %d MiB of 512", end>>20)
	}

	// BIOS boot code as in the image; UEFI loader on the ESP.
	tb, _ := os.ReadFile(target)
	ib, _ := os.ReadFile(img)
	if !bytes.Equal(tb[:440], ib[:440]) {
		t.Fatal("the target's MBR boot code differs from the appliance's")
	}
	out, err := exec.Command("mdir", "-b", "-i", target+"@@"+strconv.FormatInt(parts[0].Start*512, 10), "::/EFI/BOOT").CombinedOutput()
	if err != nil || !strings.Contains(strings.ToUpper(string(out)), "BOOTX64.EFI") {
		t.Fatalf("ESP: %v\n%s", err, out)
	}
	// The root is the appliance's, byte for byte.
	if !bytes.Equal(tb[imgParts[1].Start*512:(imgParts[1].Start+imgParts[1].Size)*512], ib[imgParts[1].Start*512:(imgParts[1].Start+imgParts[1].Size)*512]) {
		t.Fatal("root partition differs from the appliance's")
	}

	// The data partition: a clean ext4 with the frontend's configuration.
	fsImg := extract(t, target, data)
	if out, err := exec.Command("e2fsck", "-fn", fsImg).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck: %v\n%s", err, out)
	}
	var cfg frontend.Config
	if err := json.Unmarshal([]byte(debugfsCat(t, fsImg, "/frontend.json")), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Clusters) != 1 || cfg.Clusters[0].Name != "cluster0" || cfg.Clusters[0].PXEInterface != "eth1" ||
		cfg.Clusters[0].Address != "10.1.1.1/24" || cfg.Public.Address != "192.0.2.10/24" || cfg.FQDN != "frontend.lab.example" {
		t.Fatalf("frontend.json: %+v", cfg)
	}
	if !frontend.CheckPassword(cfg.Admin.PasswordHash, "correct horse battery") {
		t.Fatal("admin password hash does not check")
	}
	if env := debugfsCat(t, fsImg, "/frontend.env"); !strings.Contains(env, "IRONBARK_PRIVATE_IF='eth1'") || !strings.Contains(env, "IRONBARK_PUBLIC_ADDR='192.0.2.10/24'") {
		t.Fatalf("frontend.env:\n%s", env)
	}
	if s := debugfsCat(t, fsImg, "/controller.json"); !strings.Contains(s, `"endpoint": "https://192.0.2.10:8773/"`) {
		t.Fatalf("controller.json:\n%s", s)
	}
	if k, i := debugfsCat(t, fsImg, "/pxe/boot/vmlinuz"), debugfsCat(t, fsImg, "/pxe/boot/installer.img"); k != "node installer kernel" || i != "node installer initramfs" {
		t.Fatalf("PXE boot files: %q %q", k, i)
	}
	if s := debugfsCat(t, fsImg, "/admin/authorized_keys"); s != frontendtest.SSHKey+"\n" {
		t.Fatalf("authorized_keys: %q", s)
	}
	ans := debugfsCat(t, fsImg, "/install/answers.yaml")
	if strings.Contains(ans, "correct horse") || !strings.Contains(ans, "passwordHash: $6$rounds=100000$") {
		t.Fatalf("saved answers:\n%s", ans)
	}
	// The store holds cluster0.
	dbFile := filepath.Join(t.TempDir(), "ironbark.db")
	if out, err := exec.Command("debugfs", "-R", "dump /ironbark.db "+dbFile, fsImg).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	db, err := store.Open(context.Background(), dbFile)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg, err := cluster.NewRegistry(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := reg.Clusters(context.Background())
	if err != nil || len(cs) != 1 || cs[0].Name != "cluster0" {
		t.Fatalf("clusters %+v %v", cs, err)
	}
	// The nodes it installs take the admin's key.
	as, err := roll.NewAttrs(db).Get(context.Background(), roll.ScopeGlobal, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := as[frontend.SSHKeysAttr]; got != frontendtest.SSHKey {
		t.Fatalf("global %s = %q, want the admin's key", frontend.SSHKeysAttr, got)
	}
}

// An install that fails halfway says which step and leaves a disk with no
// partition table: nothing boots from it or mistakes it for installed.
func TestInstallFailsHalfway(t *testing.T) {
	lab.Require(t, "sfdisk")
	dir := t.TempDir()
	img := frontendtest.Image(t, dir, frontendtest.ImageSpec{})
	// Cut the image short: the appliance step runs out of bytes.
	st, _ := os.Stat(img)
	if err := os.Truncate(img, st.Size()/2); err != nil {
		t.Fatal(err)
	}
	target := frontendtest.BlankDisk(t, dir, 512<<20)
	// An old install on the target must not survive either.
	old := frontendtest.Image(t, t.TempDir(), frontendtest.ImageSpec{})
	ob, _ := os.ReadFile(old)
	if err := os.WriteFile(target, ob, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(target, 512<<20); err != nil {
		t.Fatal(err)
	}
	if l, _ := Partitions(t, target); l != "gpt" {
		t.Fatal("setup: the old install has no GPT")
	}
	err := frontend.Install(context.Background(), frontendtest.Answers(target), frontendtest.TwoNICs(),
		frontend.Medium{Image: frontend.Image{Path: img}}, slog.New(slog.DiscardHandler), nil)
	var se *frontend.StepError
	if !errors.As(err, &se) || se.Index != 2 || se.Step.Name != "write appliance" {
		t.Fatalf("want a failure in step 2 (write appliance), got %v", err)
	}
	if !strings.Contains(err.Error(), "step 2 of 5 (write appliance") || !strings.Contains(err.Error(), "no partition table") {
		t.Fatalf("message: %v", err)
	}
	if l, p := Partitions(t, target); l != "" || len(p) != 0 {
		t.Fatalf("the failed install left a partition table: %s %+v", l, p)
	}
	b, _ := os.ReadFile(target)
	if !bytes.Equal(b[:1<<20], make([]byte, 1<<20)) {
		t.Fatal("the first MiB (boot code, GPT) is not blank after a failed install")
	}
}

// Bad answers are refused before anything is written.
func TestInstallRefusesBeforeWriting(t *testing.T) {
	dir := t.TempDir()
	img := frontendtest.Image(t, dir, frontendtest.ImageSpec{})
	target := frontendtest.BlankDisk(t, dir, 512<<20)
	if err := os.WriteFile(target, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.Truncate(target, 512<<20)
	a := frontendtest.Answers(target)
	a.Private.Interface = "eth9"
	err := frontend.Install(context.Background(), a, frontendtest.TwoNICs(), frontend.Medium{Image: frontend.Image{Path: img}},
		slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), `private.interface: no interface "eth9"`) {
		t.Fatalf("got %v", err)
	}
	b, _ := os.ReadFile(target)
	if string(b[:8]) != "precious" {
		t.Fatal("the disk was written although the answers were refused")
	}
}
