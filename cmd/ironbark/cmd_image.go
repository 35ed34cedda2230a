package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"

	"ironbark/images"
	"ironbark/images/blobstore"
	"ironbark/images/iso"
	"ironbark/internal/store"
	"ironbark/pxe"
)

// imageCommands lists the image subcommands.
func imageCommands() []command {
	return []command{
		{name: "image build", summary: "build a machine image: image build --from DIR|TAR --out FILE [--format fs|disk] [--size SIZE]", run: runImageBuild},
		{name: "image import", summary: "store and register a raw/qcow2 image, kernel or ramdisk: image import FILE [--kind machine|kernel|ramdisk] [--name N]", run: runImageImport},
		{name: "image list", summary: "list registered images and whether their blobs are stored", run: runImageList},
		{name: "iso build", summary: "build the frontend ISO (BIOS+UEFI, isohybrid): iso build --out FILE [--kernel F] [--initrd F|--installer BIN]", run: runISOBuild},
	}
}

func runImageBuild(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image build", flag.ContinueOnError)
	from := fs.String("from", "", "root filesystem: a directory or a tar file (gzip/zstd detected)")
	out := fs.String("out", "", "image file to write")
	format := fs.String("format", images.FormatFS, "fs (ext4 filesystem, EC2 partition image) or disk (GPT, ESP, boots BIOS and UEFI)")
	size := fs.String("size", "", "image size (e.g. 2G); default: computed from the content")
	kernelOut := fs.String("kernel-out", "", "also write the tree's /boot/vmlinuz-* here (the EKI)")
	ramdiskOut := fs.String("ramdisk-out", "", "also write the tree's /boot/initrd.img-* here (the ERI)")
	cmdline := fs.String("cmdline", "", "disk format: kernel command line (root=PARTUUID=... is added)")
	seed := fs.String("seed", "", "seed for UUIDs (default: the output file name); same seed and input, same bytes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *from == "" || *out == "" || fs.NArg() > 0 {
		return errors.New("usage: ironbark image build --from DIR|TAR --out FILE [--format fs|disk] [--size SIZE]")
	}
	var n int64
	if *size != "" {
		var err error
		if n, err = images.ParseSize(*size); err != nil {
			return err
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	res, err := images.Build(ctx, images.BuildSpec{From: *from, Out: *out, Format: *format, Size: n,
		KernelOut: *kernelOut, RamdiskOut: *ramdiskOut, Cmdline: *cmdline, Seed: *seed, Logger: log})
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s image, %d MiB, %d files, %d dirs, %d symlinks", *out, res.Format, res.Size>>20, res.FS.Files, res.FS.Dirs, res.FS.Symlinks)
	if res.FS.HardLinksCopied > 0 {
		fmt.Printf(", %d hard links copied", res.FS.HardLinksCopied)
	}
	if len(res.FS.Skipped) > 0 {
		fmt.Printf(", %d device nodes/fifos skipped (devtmpfs provides /dev)", len(res.FS.Skipped))
	}
	fmt.Println()
	if res.RootPartUUID != "" {
		fmt.Printf("root partition PARTUUID=%s, boots %s\n", res.RootPartUUID, res.Kernel)
	}
	if *kernelOut != "" {
		fmt.Printf("kernel (EKI): %s from /%s\n", *kernelOut, res.Kernel)
	}
	if *ramdiskOut != "" {
		fmt.Printf("ramdisk (ERI): %s from /%s\n", *ramdiskOut, res.Ramdisk)
	}
	return nil
}

// openImageStore opens the data dir's blob store and the controller's
// store (the URL the controller remembered, or DATA/ironbark.db).
func openImageStore(ctx context.Context, dataDir, dbURL string) (*store.DB, *blobstore.Store, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, nil, err
	}
	blobs, err := blobstore.Open(images.StoreDir(dataDir))
	if err != nil {
		return nil, nil, err
	}
	db, err := (&storeFlags{dataDir: dataDir, db: dbURL}).openStore(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	return db, blobs, nil
}

func runImageImport(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image import", flag.ContinueOnError)
	dataDir := fs.String("data-dir", defaultDataDir, "frontend data directory")
	dbURL := fs.String("db", "", "store URL (default: the controller's, else SQLite file DATA/ironbark.db)")
	kind := fs.String("kind", images.KindMachine, "machine, kernel or ramdisk")
	name := fs.String("name", "", "image name (default: from the file name)")
	desc := fs.String("description", "", "description")
	owner := fs.String("owner", "", "owning account (id or name; default: admin)")
	kernel := fs.String("kernel", "", "machine image: kernel image id (eki-...)")
	ramdisk := fs.String("ramdisk", "", "machine image: ramdisk image id (eri-...)")
	public := fs.Bool("public", false, "launchable by every account")
	pos, err := parseArgs(fs, args, 1, "usage: ironbark image import FILE --data-dir DIR [--kind machine|kernel|ramdisk] [--name NAME]")
	if err != nil {
		return err
	}
	db, blobs, err := openImageStore(ctx, *dataDir, *dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	im, err := images.Import(ctx, db, blobs, images.ImportSpec{File: pos[0], Kind: *kind, Name: *name, Description: *desc,
		Owner: *owner, KernelID: *kernel, RamdiskID: *ramdisk, Public: *public})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "stored %s (%s, %d bytes) in %s\n", im.Digest, im.Format, im.Size, images.StoreDir(*dataDir))
	fmt.Println(im.ID)
	return nil
}

func runImageList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image list", flag.ContinueOnError)
	dataDir := fs.String("data-dir", defaultDataDir, "frontend data directory")
	dbURL := fs.String("db", "", "store URL (default: the controller's, else SQLite file DATA/ironbark.db)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	db, blobs, err := openImageStore(ctx, *dataDir, *dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	list, err := images.List(ctx, db, blobs)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tKIND\tNAME\tFORMAT\tSIZE\tOWNER\tPUBLIC\tSTATE\tDIGEST")
	for _, l := range list {
		d := l.Digest
		if len(d) > 19 {
			d = d[:19] + "…"
		}
		if !l.BlobPresent {
			d += " (blob missing)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%v\t%s\t%s\n", l.ID, l.Kind, l.Name, l.Format, l.Size, l.Owner, l.Public, l.State, d)
	}
	return w.Flush()
}

func runISOBuild(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("iso build", flag.ContinueOnError)
	out := fs.String("out", "", "ISO file to write")
	kernel := fs.String("kernel", "", "kernel (bzImage); default: the Debian cloud kernel in the lab cache")
	modules := fs.String("modules", "", "kernel module dir for --installer (default: the cached kernel's)")
	initrd := fs.String("initrd", "", "installer initramfs to boot")
	installer := fs.String("installer", "", "static ironbark-installer binary to build the initramfs from (default: next to this binary)")
	rolls := fs.String("rolls", "", "directory copied to rolls/ on the ISO")
	cmdline := fs.String("cmdline", "console=tty0 console=ttyS0,115200", "kernel command line")
	volid := fs.String("volume-id", "IRONBARK", "ISO volume id")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		return errors.New("usage: ironbark iso build --out FILE [--kernel VMLINUZ] [--initrd FILE | --installer BIN --modules DIR] [--rolls DIR]")
	}
	if *kernel == "" {
		k, mods, err := cachedKernel()
		if err != nil {
			return err
		}
		*kernel = k
		if *modules == "" {
			*modules = mods
		}
	}
	if *initrd == "" {
		if *installer == "" {
			self, err := os.Executable()
			if err == nil {
				cand := filepath.Join(filepath.Dir(self), "ironbark-installer")
				if _, err := os.Stat(cand); err == nil {
					*installer = cand
				}
			}
		}
		if *installer == "" || *modules == "" {
			return errors.New("iso build: no installer initramfs: give --initrd FILE, or --installer BIN (go build ./cmd/ironbark-installer) and --modules /lib/modules/VERSION")
		}
		tmp, err := os.CreateTemp(filepath.Dir(*out), ".installer-*.img")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		if err := pxe.BuildInstallerInitramfs(tmp, *installer, *modules); err != nil {
			tmp.Close()
			return err
		}
		if err := tmp.Close(); err != nil {
			return err
		}
		*initrd = tmp.Name()
		fmt.Fprintf(os.Stderr, "installer initramfs built from %s with modules of %s\n", *installer, *modules)
	}
	res, err := iso.Build(ctx, *out, iso.Spec{Kernel: *kernel, Initrd: *initrd, Rolls: *rolls, Cmdline: *cmdline, VolumeID: *volid})
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d MiB, kernel %s, El Torito BIOS (isolinux.bin at LBA %d) + UEFI (efiboot.img at LBA %d), isohybrid MBR\n",
		*out, res.Size>>20, *kernel, res.IsolinuxLBA, res.EFIImageLBA)
	return nil
}

// cachedKernel finds the Debian cloud kernel the lab kit unpacked
// ($IRONBARK_LAB_CACHE or /var/cache/ironbark-lab).
func cachedKernel() (kernel, modules string, err error) {
	cache := os.Getenv("IRONBARK_LAB_CACHE")
	if cache == "" {
		cache = "/var/cache/ironbark-lab"
	}
	root := filepath.Join(cache, "kernel", "root")
	vms, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(vms) == 0 {
		return "", "", fmt.Errorf("iso build: no --kernel given and no cached kernel under %s (apt-get download linux-image-cloud-amd64's package, dpkg -x it, pass --kernel .../boot/vmlinuz-*)", root)
	}
	sort.Strings(vms)
	k := vms[len(vms)-1]
	ver := filepath.Base(k)[len("vmlinuz-"):]
	return k, filepath.Join(root, "lib", "modules", ver), nil
}
