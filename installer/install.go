package installer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/filesystem"

	"ironbark/internal/retry"
	"ironbark/pxe/bootapi"
)

// Installer talks to the frontend and writes the disk.
type Installer struct {
	Config Config
	Client *http.Client
	Log    *slog.Logger
	// RetryFor bounds how long a request to the frontend is retried (the
	// frontend may restart mid-install); 0 means 3 minutes.
	RetryFor time.Duration
}

// errPermanent marks an answer that retrying cannot change.
type errPermanent struct{ error }

func (e errPermanent) Unwrap() error { return e.error }

func (in *Installer) retryFor() time.Duration {
	if in.RetryFor > 0 {
		return in.RetryFor
	}
	return 3 * time.Minute
}

// retry runs fn until it succeeds, fails permanently, or RetryFor passes.
func (in *Installer) retry(ctx context.Context, what string, fn func() error) error {
	err := retry.Do(ctx, retry.Policy{
		For: in.retryFor(), Wait: 250 * time.Millisecond, MaxWait: 5 * time.Second,
		Retryable: func(err error) bool { return !errors.As(err, new(errPermanent)) },
		OnRetry: func(err error, _ int, wait time.Duration) {
			in.Log.Warn("retrying", "what", what, "err", err, "in", wait)
		},
	}, func(int) error { return fn() })
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func (in *Installer) hostURL(suffix string) string {
	return in.Config.URL + bootapi.PathInstall + in.Config.Host + suffix
}

// Report posts one progress report, retrying while the frontend is away.
func (in *Installer) Report(ctx context.Context, p bootapi.Progress) error {
	p.Attempt = in.Config.Attempt
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return in.retry(ctx, "report "+p.State, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.hostURL("/progress"), bytes.NewReader(body))
		if err != nil {
			return errPermanent{err}
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := in.Client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		switch {
		case resp.StatusCode < 300:
			return nil
		case resp.StatusCode >= 500:
			return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
		default:
			return errPermanent{fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))}
		}
	})
}

// Profile fetches this host's install profile.
func (in *Installer) Profile(ctx context.Context) (bootapi.Profile, error) {
	var p bootapi.Profile
	err := in.retry(ctx, "fetch profile", func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.hostURL("/profile?attempt="+in.Config.Attempt), nil)
		if err != nil {
			return errPermanent{err}
		}
		resp, err := in.Client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			err := fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
			if resp.StatusCode >= 500 {
				return err
			}
			return errPermanent{err}
		}
		return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&p)
	})
	return p, err
}

// Run installs onto disk (a block device or, in tests, a file) and reports
// the result. The returned error is what was reported as the failure.
func (in *Installer) Run(ctx context.Context, disk string) error {
	err := in.install(ctx, disk)
	if err != nil {
		in.Log.Error("install failed", "host", in.Config.Host, "err", err)
		if rerr := in.Report(ctx, failure(err)); rerr != nil {
			in.Log.Error("could not report the failure", "err", rerr)
		}
		return err
	}
	if err := in.Report(ctx, bootapi.Progress{State: bootapi.StateDone, Percent: 100, Step: "installed"}); err != nil {
		return err
	}
	in.Log.Info("install done", "host", in.Config.Host)
	return nil
}

func (in *Installer) install(ctx context.Context, disk string) error {
	_ = in.Report(ctx, bootapi.Progress{State: bootapi.StateRunning, Percent: 1, Step: "fetching profile"})
	p, err := in.Profile(ctx)
	if err != nil {
		return err
	}
	if err := in.WriteImage(ctx, p.Image, disk); err != nil {
		return err
	}
	_ = in.Report(ctx, bootapi.Progress{State: bootapi.StateRunning, Percent: 97, Step: "writing identity"})
	if err := WriteFiles(disk, p.Files); err != nil {
		return err
	}
	// root's SSH keys: the frontend's at this install, not the image's
	// build. A custom image without an ext4 root still installs; its own
	// keys (if any) are what it has.
	if strings.TrimSpace(p.AuthorizedKeys) != "" {
		_ = in.Report(ctx, bootapi.Progress{State: bootapi.StateRunning, Percent: 98, Step: "writing root's ssh keys"})
		n, err := WriteAuthorizedKeys(disk, p.AuthorizedKeys)
		switch {
		case errors.Is(err, ErrNoRootFS):
			in.Log.Warn("root's ssh keys not written: the image has no ext4 root filesystem", "err", err)
		case err != nil:
			return err
		default:
			in.Log.Info("root's ssh keys written", "added", n)
		}
	}
	// The image is as small as its content: give the root the rest of the
	// disk (the filesystem follows at first boot). A node whose table
	// cannot be grown still boots, with the image's size.
	if n, err := GrowRoot(disk); err != nil {
		in.Log.Warn("root partition left at the image's size", "err", err)
	} else if n > 0 {
		in.Log.Info("root partition grown to the disk", "bytes", n)
	}
	return nil
}

// WriteImage streams the image onto disk, verifying its size and sha256.
// A broken download resumes at the byte it stopped with a Range request.
func (in *Installer) WriteImage(ctx context.Context, img bootapi.Image, disk string) error {
	want, ok := strings.CutPrefix(img.Digest, "sha256:")
	if !ok || len(want) != 64 {
		return fmt.Errorf("image digest %q: want sha256:<hex>", img.Digest)
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open disk %s: %w", disk, err)
	}
	defer f.Close()
	if size, err := f.Seek(0, io.SeekEnd); err == nil && size > 0 && size < img.Size {
		return fmt.Errorf("disk %s holds %d bytes, image needs %d", disk, size, img.Size)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("seek disk %s: %w", disk, err)
	}
	h := sha256.New()
	var written int64
	lastPct := -1
	err = in.retry(ctx, "download image", func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, img.URL, nil)
		if err != nil {
			return errPermanent{err}
		}
		if written > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", written))
		}
		resp, err := in.Client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		switch {
		case written == 0 && resp.StatusCode == http.StatusOK:
		case written > 0 && resp.StatusCode == http.StatusPartialContent:
		case resp.StatusCode >= 500:
			return fmt.Errorf("GET %s: %s", img.URL, resp.Status)
		default:
			return errPermanent{fmt.Errorf("GET %s: %s", img.URL, resp.Status)}
		}
		buf := make([]byte, 1<<20)
		for {
			n, rerr := io.ReadFull(resp.Body, buf)
			if n > 0 {
				if written+int64(n) > img.Size {
					return errPermanent{fmt.Errorf("image is larger than the %d bytes the profile says", img.Size)}
				}
				if _, err := f.Write(buf[:n]); err != nil {
					return errPermanent{fmt.Errorf("write disk %s: %w", disk, err)}
				}
				h.Write(buf[:n])
				written += int64(n)
				if pct := int(5 + 90*written/max(img.Size, 1)); pct/5 != lastPct/5 {
					lastPct = pct
					_ = in.Report(ctx, bootapi.Progress{State: bootapi.StateRunning, Percent: pct, Step: "writing image"})
				}
			}
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				if written < img.Size {
					return fmt.Errorf("image download stopped at %d of %d bytes", written, img.Size)
				}
				return nil
			}
			if rerr != nil {
				return rerr
			}
		}
	})
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("image digest mismatch: got sha256:%s, profile says sha256:%s", got, want)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync disk %s: %w", disk, err)
	}
	in.Log.Info("image written and verified", "bytes", written, "digest", img.Digest)
	return nil
}

// WriteFiles writes the identity files into the image's first partition
// (its FAT boot partition) with go-diskfs.
func WriteFiles(disk string, files []bootapi.File) error {
	d, err := diskfs.Open(disk, diskfs.WithOpenMode(diskfs.ReadWrite))
	if err != nil {
		return fmt.Errorf("open %s: %w", disk, err)
	}
	defer d.Close()
	fs, err := d.GetFilesystem(1)
	if err != nil {
		return fmt.Errorf("boot partition of %s: %w", disk, err)
	}
	for _, fl := range files {
		p := "/" + strings.TrimLeft(path.Clean("/"+fl.Path), "/")
		if dir := path.Dir(p); dir != "/" {
			if err := fs.Mkdir(dir); err != nil {
				return fmt.Errorf("mkdir %s: %w", dir, err)
			}
		}
		if err := writeFSFile(fs, p, []byte(fl.Content)); err != nil {
			return err
		}
	}
	return nil
}

func writeFSFile(fs filesystem.FileSystem, p string, data []byte) error {
	w, err := fs.OpenFile(p, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	if _, err := w.Write(data); err != nil {
		w.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("close %s: %w", p, err)
	}
	return nil
}

func failure(err error) bootapi.Progress {
	return bootapi.Progress{State: bootapi.StateFailed, Error: err.Error()}
}
