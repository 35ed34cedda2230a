package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"ironbark/controller"
	"ironbark/images"
	"ironbark/images/blobstore"
	"ironbark/images/iso"
	"ironbark/installer"
	"ironbark/installer/frontend"
	"ironbark/pxe"
)

func imageBuild(fs *flag.FlagSet) runFunc {
	from := fs.String("from", "", "root filesystem: a directory or a tar file (gzip/zstd detected)")
	out := fs.String("out", "", "image file to write")
	format := fs.String("format", images.FormatFS, "fs (ext4 filesystem, EC2 partition image) or disk (GPT, ESP, boots BIOS and UEFI)")
	size := fs.String("size", "", "image size (e.g. 2G); default: computed from the content")
	kernelOut := fs.String("kernel-out", "", "also write the tree's /boot/vmlinuz-* here (the EKI)")
	ramdiskOut := fs.String("ramdisk-out", "", "also write the tree's /boot/initrd.img-* here (the ERI)")
	cmdline := fs.String("cmdline", "", "disk format: kernel command line (root=PARTUUID=... is added)")
	seed := fs.String("seed", "", "seed for UUIDs (default: the output file name); same seed and input, same bytes")
	return func(ctx context.Context, e *env) error {
		if *from == "" || *out == "" {
			return e.usagef("image build: --from and --out are required")
		}
		return buildImage(ctx, e, images.BuildSpec{From: *from, Out: *out, Format: *format,
			KernelOut: *kernelOut, RamdiskOut: *ramdiskOut, Cmdline: *cmdline, Seed: *seed}, *size)
	}
}

func buildImage(ctx context.Context, e *env, spec images.BuildSpec, size string) error {
	var n int64
	if size != "" {
		var err error
		if n, err = images.ParseSize(size); err != nil {
			return err
		}
	}
	spec.Size, spec.Logger = n, e.logger(slog.LevelInfo)
	res, err := images.Build(ctx, spec)
	if err != nil {
		return err
	}
	out := e.stdout
	fmt.Fprintf(out, "%s: %s image, %d MiB, %d files, %d dirs, %d symlinks", spec.Out, res.Format, res.Size>>20, res.FS.Files, res.FS.Dirs, res.FS.Symlinks)
	if res.FS.HardLinksCopied > 0 {
		fmt.Fprintf(out, ", %d hard links copied", res.FS.HardLinksCopied)
	}
	if len(res.FS.Skipped) > 0 {
		fmt.Fprintf(out, ", %d device nodes/fifos skipped (devtmpfs provides /dev)", len(res.FS.Skipped))
	}
	fmt.Fprintln(out)
	if res.RootPartUUID != "" {
		fmt.Fprintf(out, "root partition PARTUUID=%s, boots %s\n", res.RootPartUUID, res.Kernel)
	}
	if spec.KernelOut != "" {
		fmt.Fprintf(out, "kernel (EKI): %s from /%s\n", spec.KernelOut, res.Kernel)
	}
	if spec.RamdiskOut != "" {
		fmt.Fprintf(out, "ramdisk (ERI): %s from /%s\n", spec.RamdiskOut, res.Ramdisk)
	}
	return nil
}

// openImages opens the data dir's blob store and the controller's image
// catalog.
func (e *env) openImages(ctx context.Context) (*controller.ImageCatalog, *blobstore.Store, error) {
	blobs, err := blobstore.Open(e.dir().Images())
	if err != nil {
		return nil, nil, err
	}
	db, err := e.openStore(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	cat, err := controller.OpenImageCatalog(ctx, db)
	return cat, blobs, err
}

func imageImport(fs *flag.FlagSet) runFunc {
	kind := fs.String("kind", images.KindMachine, "machine, kernel or ramdisk")
	name := fs.String("name", "", "image name (default: from the file name)")
	desc := fs.String("description", "", "description")
	owner := fs.String("owner", "", "owning account (id or name; default: admin)")
	kernel := fs.String("kernel", "", "machine image: kernel image id (eki-...)")
	ramdisk := fs.String("ramdisk", "", "machine image: ramdisk image id (eri-...)")
	public := fs.Bool("public", false, "launchable by every account")
	return func(ctx context.Context, e *env) error {
		return importImage(ctx, e, images.ImportSpec{File: e.args[0], Kind: *kind, Name: *name, Description: *desc,
			Owner: *owner, KernelID: *kernel, RamdiskID: *ramdisk, Public: *public})
	}
}

func importImage(ctx context.Context, e *env, spec images.ImportSpec) error {
	cat, blobs, err := e.openImages(ctx)
	if err != nil {
		return err
	}
	im, err := images.Import(ctx, cat, blobs, spec)
	if err != nil {
		return err
	}
	e.say("stored %s (%s, %d bytes) in %s", im.Digest, im.Format, im.Size, e.dir().Images())
	fmt.Fprintln(e.stdout, im.ID)
	return nil
}

// imageRow is a line of `image list`, and its JSON shape.
type imageRow struct {
	ID          string `json:"id"`
	Kind        string `json:"kind"`
	Name        string `json:"name"`
	Format      string `json:"format"`
	Size        int64  `json:"size"`
	Owner       string `json:"owner"`
	Public      bool   `json:"public"`
	State       string `json:"state"`
	Digest      string `json:"digest"`
	BlobPresent bool   `json:"blobPresent"`
}

func imageList(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		cat, blobs, err := e.openImages(ctx)
		if err != nil {
			return err
		}
		list, err := images.List(ctx, cat, blobs)
		if err != nil {
			return err
		}
		rows := make([]imageRow, len(list))
		for i, l := range list {
			rows[i] = imageRow{ID: l.ID, Kind: l.Kind, Name: l.Name, Format: l.Format, Size: l.Size, Owner: l.Owner,
				Public: l.Public, State: l.State, Digest: l.Digest, BlobPresent: l.BlobPresent}
		}
		return printList(e, []string{"ID", "KIND", "NAME", "FORMAT", "SIZE", "OWNER", "PUBLIC", "STATE", "DIGEST"}, rows)
	}
}

func (r imageRow) cells() []string {
	d := r.Digest
	if len(d) > 19 {
		d = d[:19] + "…"
	}
	if !r.BlobPresent {
		d += " (blob missing)"
	}
	return []string{r.ID, r.Kind, r.Name, r.Format, strconv.FormatInt(r.Size, 10), r.Owner, strconv.FormatBool(r.Public), r.State, d}
}

// isoFlags are the flags of `ironbark iso build`.
type isoFlags struct {
	out, kernel, modules, initrd, installer string
	frontendImage, answers                  string
	appliances                              listFlag
	spec                                    iso.Spec
}

func isoBuild(fs *flag.FlagSet) runFunc {
	var f isoFlags
	fs.StringVar(&f.out, "out", "", "ISO file to write")
	fs.StringVar(&f.kernel, "kernel", "", "kernel (bzImage); default: the Debian cloud kernel in the lab cache")
	fs.StringVar(&f.modules, "modules", "", "kernel module dir for --installer (default: the cached kernel's)")
	fs.StringVar(&f.initrd, "initrd", "", "installer initramfs to boot")
	fs.StringVar(&f.installer, "installer", "", "static ironbark-installer binary built with -tags frontend (it carries the frontend installer) to build the initramfs from (default: ironbark-installer-iso next to this binary)")
	fs.StringVar(&f.spec.Rolls, "rolls", "", "directory copied to rolls/ on the ISO")
	fs.StringVar(&f.frontendImage, "frontend-image", "", "the frontend appliance disk image (raw, compressed here, or zstd): the default entry becomes the frontend installer, which lays it down")
	fs.StringVar(&f.answers, "answers", "", "with --frontend-image: an answer file put on the ISO; the frontend installs unattended from it")
	fs.Var(&f.appliances, "appliance", "with --frontend-image: NAME=IMAGE, a node appliance's image (appliance build --out) carried on the ISO; the install makes it what NAME installs, and the ISO's installer what PXE boots (repeatable)")
	fs.StringVar(&f.spec.Cmdline, "cmdline", "console=tty0 console=ttyS0,115200", "kernel command line")
	fs.StringVar(&f.spec.VolumeID, "volume-id", "IRONBARK", "ISO volume id")
	return func(ctx context.Context, e *env) error {
		if f.out == "" {
			return e.usagef("iso build: --out is required")
		}
		return buildISO(ctx, e, f)
	}
}

func buildISO(ctx context.Context, e *env, f isoFlags) error {
	if f.kernel == "" {
		k, mods, err := cachedKernel()
		if err != nil {
			return err
		}
		f.kernel = k
		if f.modules == "" {
			f.modules = mods
		}
	}
	if f.initrd == "" {
		if f.installer == "" {
			self, err := os.Executable()
			if err == nil {
				cand := filepath.Join(filepath.Dir(self), "ironbark-installer-iso")
				if _, err := os.Stat(cand); err == nil {
					f.installer = cand
				}
			}
		}
		if f.installer == "" || f.modules == "" {
			return e.usagef("iso build: no installer initramfs: give --initrd FILE, or --installer BIN (CGO_ENABLED=0 go build -tags frontend ./cmd/ironbark-installer) and --modules /lib/modules/VERSION")
		}
		tmp, err := os.CreateTemp(filepath.Dir(f.out), ".installer-*.img")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		if err := pxe.BuildInstallerInitramfs(tmp, f.installer, f.modules); err != nil {
			tmp.Close()
			return err
		}
		if err := tmp.Close(); err != nil {
			return err
		}
		f.initrd = tmp.Name()
		e.say("installer initramfs built from %s with modules of %s", f.installer, f.modules)
	}
	f.spec.Kernel, f.spec.Initrd = f.kernel, f.initrd
	if f.frontendImage != "" {
		if f.answers != "" {
			b, err := os.ReadFile(f.answers)
			if err != nil {
				return err
			}
			if _, err := frontend.Parse(b); err != nil {
				return fmt.Errorf("iso build: %s: %w", f.answers, err)
			}
		}
		// The ISO carries the image zstd-compressed.
		im := frontend.Image{Path: f.frontendImage}
		z, err := im.Compressed()
		if err != nil {
			return err
		}
		if !z {
			tmp := filepath.Join(filepath.Dir(f.out), "."+filepath.Base(f.out)+".frontend.img.zst")
			defer os.Remove(tmp)
			if err := im.Compress(tmp); err != nil {
				return err
			}
			st, err := os.Stat(tmp)
			if err != nil {
				return err
			}
			e.say("frontend image %s compressed for the ISO: %d MiB", f.frontendImage, st.Size()>>20)
			f.frontendImage = tmp
		}
		f.spec = installer.ISOSpec(f.spec, f.frontendImage, f.answers)
		if len(f.appliances) > 0 {
			images := map[string]string{}
			for _, a := range f.appliances {
				name, file, ok := strings.Cut(a, "=")
				if !ok || name == "" || file == "" {
					return e.usagef("iso build: --appliance %q: want NAME=IMAGE", a)
				}
				images[name] = file
			}
			dir, err := os.MkdirTemp(filepath.Dir(f.out), ".iso-manifest-*")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			var m frontend.Manifest
			if f.spec, m, err = frontend.Carry(f.spec, images, dir); err != nil {
				return fmt.Errorf("iso build: %w", err)
			}
			for _, a := range m.Appliances {
				e.say("carrying appliance %s: %s (%s, %d MiB)", a.Name, images[a.Name], a.Digest, a.Size>>20)
			}
		}
	} else if f.answers != "" || len(f.appliances) > 0 {
		return e.usagef("iso build: --answers and --appliance need --frontend-image")
	}
	res, err := iso.Build(ctx, f.out, f.spec)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: %d MiB, kernel %s, El Torito BIOS (isolinux.bin at LBA %d) + UEFI (efiboot.img at LBA %d), isohybrid MBR\n",
		f.out, res.Size>>20, f.kernel, res.IsolinuxLBA, res.EFIImageLBA)
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
