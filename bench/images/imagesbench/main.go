// Command imagesbench compares ironbark's image builders with the
// standard tools on one generated tree; bench/images/run builds and runs
// it. Machines are shared and noisy: read the ratios, not the times.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"ironbark/images/disk"
	"ironbark/images/iso"
)

func main() {
	files := flag.Int("files", 5000, "small files in the tree")
	bigMiB := flag.Int("big-mib", 960, "MiB of data in 24 MiB files on top of the small files")
	runs := flag.Int("runs", 2, "runs per tool (the fastest counts)")
	ironbark := flag.String("ironbark", "", "ironbark binary for the peak-memory run")
	work := flag.String("dir", "", "work directory (default: a temporary one, removed after)")
	treeOnly := flag.Bool("tree-only", false, "only generate DIR/tree (for profiling)")
	flag.Parse()
	if *treeOnly {
		n, b, err := makeTree(filepath.Join(*work, "tree"), *files, *bigMiB)
		fmt.Println(n, "files", b>>20, "MiB", err)
		return
	}
	if err := run(*files, *bigMiB, *runs, *ironbark, *work); err != nil {
		fmt.Fprintln(os.Stderr, "imagesbench:", err)
		os.Exit(1)
	}
}

func run(files, bigMiB, runs int, ironbark, work string) error {
	ctx := context.Background()
	if work == "" {
		d, err := os.MkdirTemp("", "imagesbench-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		work = d
	}
	tree := filepath.Join(work, "tree")
	n, bytes, err := makeTree(tree, files, bigMiB)
	if err != nil {
		return err
	}
	fmt.Printf("tree: %d files, %d MiB (%s)\n", n, bytes>>20, tree)
	size := (bytes*3/2 + 256<<20) &^ (1<<20 - 1)

	// Flush the freshly written tree so its writeback does not land on
	// whichever tool runs first; then alternate the tools.
	syscall.Sync()
	ours := filepath.Join(work, "ours.ext4")
	ref := filepath.Join(work, "mkfs.ext4")
	tOurs, tRef, err := alternate(runs, func() error {
		os.Remove(ours)
		_, err := disk.BuildFilesystem(ctx, ours, disk.FSExt4, disk.DirSource(tree), size, disk.FSOptions{})
		return err
	}, func() error {
		os.Remove(ref)
		// mkfs.ext4 fsyncs the image on close, as ironbark does.
		return cmd("mkfs.ext4", "-q", "-F", "-d", tree, ref, fmt.Sprintf("%dM", size>>20))
	})
	if err != nil {
		return fmt.Errorf("ext4: %w", err)
	}
	fmt.Printf("ext4 %d MiB image: ironbark %.2fs, mkfs.ext4 -d %.2fs, ratio %.2f (goal <= 1.5)\n",
		size>>20, tOurs.Seconds(), tRef.Seconds(), tOurs.Seconds()/tRef.Seconds())
	if err := cmd("e2fsck", "-fn", ours); err != nil {
		return fmt.Errorf("e2fsck on ironbark's image: %w", err)
	}
	os.Remove(ours)
	os.Remove(ref)

	// ISO: the frontend ISO with the tree as rolls/ vs xorriso on the
	// same files (kernel and initramfs stand-ins are small).
	kernel := filepath.Join(work, "vmlinuz")
	initrd := filepath.Join(work, "initrd.img")
	os.WriteFile(kernel, make([]byte, 8<<20), 0o644)
	os.WriteFile(initrd, []byte("070701"), 0o644)
	oursISO := filepath.Join(work, "ours.iso")
	refISO := filepath.Join(work, "xorriso.iso")
	syscall.Sync()
	tOursISO, tRefISO, err := alternate(runs, func() error {
		os.Remove(oursISO)
		_, err := iso.Build(ctx, oursISO, iso.Spec{Kernel: kernel, Initrd: initrd, Rolls: tree})
		return err
	}, func() error {
		os.Remove(refISO)
		if err := cmd("xorriso", "-as", "mkisofs", "-quiet", "-R", "-o", refISO, "-graft-points",
			"rolls/="+tree, "boot/vmlinuz="+kernel, "boot/initrd.img="+initrd); err != nil {
			return err
		}
		// xorriso does not fsync; ironbark does before renaming the ISO
		// into place. Count the same durability for both.
		return fsync(refISO)
	})
	if err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	fmt.Printf("ISO of the tree: ironbark %.2fs, xorriso -as mkisofs (+fsync) %.2fs, ratio %.2f (goal <= 1.5)\n",
		tOursISO.Seconds(), tRefISO.Seconds(), tOursISO.Seconds()/tRefISO.Seconds())
	os.Remove(oursISO)
	os.Remove(refISO)

	if ironbark != "" {
		for _, format := range []string{"fs", "disk"} {
			out := filepath.Join(work, "4g-"+format+".img")
			rss, err := peakRSS(ironbark, "image", "build", "--from", tree, "--out", out, "--size", "4G", "--format", format)
			if err != nil && format == "disk" {
				// --format disk needs a kernel in /boot; the generated tree has none.
				continue
			}
			if err != nil {
				return fmt.Errorf("peak memory run: %w", err)
			}
			fmt.Printf("peak RSS of `ironbark image build --size 4G --format %s` (%d MiB of content): %d MiB\n", format, bytes>>20, rss>>10)
			os.Remove(out)
		}
	}
	return nil
}

// makeTree writes files small files (1-16 KiB) in 50 directories and
// bigMiB MiB in 24 MiB files, with pseudo-random (incompressible, not
// sparse) content, a few symlinks among them.
func makeTree(root string, files, bigMiB int) (int, int64, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return 0, 0, err
	}
	rng := rand.New(rand.NewChaCha8([32]byte{'i', 'r', 'o', 'n'}))
	buf := make([]byte, 24<<20)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	var total int64
	n := 0
	for i := 0; i < files; i++ {
		dir := filepath.Join(root, fmt.Sprintf("usr/share/d%02d", i%50))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return 0, 0, err
		}
		sz := 1024 + rng.IntN(15*1024)
		off := rng.IntN(len(buf) - sz)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), buf[off:off+sz], 0o644); err != nil {
			return 0, 0, err
		}
		total += int64(sz)
		n++
		if i%500 == 0 {
			os.Symlink(fmt.Sprintf("f%05d", i), filepath.Join(dir, fmt.Sprintf("l%05d", i)))
		}
	}
	os.MkdirAll(filepath.Join(root, "var/big"), 0o755)
	for left, i := bigMiB<<20, 0; left > 0; i++ {
		sz := min(left, len(buf))
		buf[0], buf[1] = byte(i), byte(i>>8) // no two files alike
		if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("var/big/blob%03d", i)), buf[:sz], 0o644); err != nil {
			return 0, 0, err
		}
		total += int64(sz)
		left -= sz
		n++
	}
	return n, total, nil
}

// alternate runs a and b in turns, runs times each, and returns the
// fastest time of each: on a shared machine the minimum is the least
// disturbed run, and alternating spreads the disturbance fairly.
func alternate(runs int, a, b func() error) (time.Duration, time.Duration, error) {
	var ta, tb time.Duration
	timed := func(f func() error, best *time.Duration) error {
		start := time.Now()
		if err := f(); err != nil {
			return err
		}
		if d := time.Since(start); *best == 0 || d < *best {
			*best = d
		}
		return nil
	}
	for i := 0; i < runs; i++ {
		if err := timed(a, &ta); err != nil {
			return 0, 0, err
		}
		if err := timed(b, &tb); err != nil {
			return 0, 0, err
		}
	}
	return ta, tb, nil
}

func cmd(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

var maxRSS = regexp.MustCompile(`Maximum resident set size \(kbytes\): (\d+)`)

// peakRSS runs a command under /usr/bin/time -v and returns its peak
// resident set size in KiB.
func peakRSS(name string, args ...string) (int64, error) {
	out, err := exec.Command("/usr/bin/time", append([]string{"-v", name}, args...)...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%s: %v: %s", name, err, out)
	}
	m := maxRSS.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no peak RSS in /usr/bin/time output")
	}
	var kb int64
	fmt.Sscan(string(m[1]), &kb)
	return kb, nil
}

func fsync(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
