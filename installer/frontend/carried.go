package frontend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"ironbark/images/blobstore"
	"ironbark/images/disk"
	"ironbark/images/iso"
	"ironbark/internal/datadir"
	"ironbark/internal/store"
	"ironbark/pxe"
)

// The install medium may carry node appliance images beside the
// frontend's own (Rocks carries its rolls on the same CD): the install
// puts them in the frontend's image store and makes each what its
// appliance installs (the node installer itself comes from the medium's
// /boot, Medium.InstallerDir). The frontend then provisions nodes from
// its first boot, with no file to copy onto it.

// ManifestPath is the medium's list of carried appliance images.
const ManifestPath = "images/appliances.json"

// Manifest is images/appliances.json.
type Manifest struct {
	Version    int                `json:"version"`
	Appliances []CarriedAppliance `json:"appliances"`
}

// CarriedAppliance is one appliance image on the medium.
type CarriedAppliance struct {
	Name string `json:"name"`
	// File is relative to the medium's root (images/NAME.img); in a
	// Medium it is the path to read.
	File   string           `json:"file"`
	Digest blobstore.Digest `json:"digest"`
	Size   int64            `json:"size"`
}

// NewManifest describes images (appliance name -> host path) for a
// medium on which each lies at images/NAME.img; it reads every image once
// for its digest.
func NewManifest(images map[string]string) (Manifest, error) {
	m := Manifest{Version: 1}
	names := make([]string, 0, len(images))
	for n := range images {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := pxe.ValidAppliance(n); err != nil {
			return m, err
		}
		if n == "frontend" {
			return m, errors.New("appliance frontend: the frontend's image is the one the installer lays down, not a carried one")
		}
		f, err := os.Open(images[n])
		if err != nil {
			return m, fmt.Errorf("appliance %s: %w", n, err)
		}
		h := sha256.New()
		size, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return m, fmt.Errorf("appliance %s: read %s: %w", n, images[n], err)
		}
		m.Appliances = append(m.Appliances, CarriedAppliance{Name: n, File: "images/" + n + ".img",
			Digest: blobstore.FromHash(h), Size: size})
	}
	return m, nil
}

// ReadManifest reads the medium's manifest, with File made a path under
// dir; a medium without one carries no appliances.
func ReadManifest(dir string) ([]CarriedAppliance, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestPath))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("carried appliances: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("carried appliances: %s: %w", ManifestPath, err)
	}
	if m.Version != 1 {
		return nil, fmt.Errorf("carried appliances: %s: version %d, this installer reads 1", ManifestPath, m.Version)
	}
	for i, a := range m.Appliances {
		if err := pxe.ValidAppliance(a.Name); err != nil {
			return nil, fmt.Errorf("carried appliances: %w", err)
		}
		if _, err := blobstore.ParseDigest(string(a.Digest)); err != nil {
			return nil, fmt.Errorf("carried appliance %s: %w", a.Name, err)
		}
		p := filepath.Join(dir, filepath.FromSlash(a.File))
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("carried appliance %s: %w", a.Name, err)
		}
		if st.Size() != a.Size {
			return nil, fmt.Errorf("carried appliance %s: %s is %d bytes, the manifest says %d", a.Name, a.File, st.Size(), a.Size)
		}
		m.Appliances[i].File = p
	}
	return m.Appliances, nil
}

// carriedFile is a file streamed into the data partition from the medium
// (too big to stage in the installer's memory).
type carriedFile struct {
	path   string // in the data partition
	src    string
	size   int64
	digest blobstore.Digest // checked while written; "" for none
}

// stageCarried registers the carried appliances in the staged store and
// returns the files that go with them into the data partition: each
// image as its blob.
func stageCarried(ctx context.Context, stage string, apps []CarriedAppliance) ([]carriedFile, error) {
	if len(apps) == 0 {
		return nil, nil
	}
	dd := datadir.Dir(stage)
	var files []carriedFile
	{
		blobs, err := blobstore.Open(dd.Images())
		if err != nil {
			return nil, err
		}
		db, err := store.Open(ctx, dd.Store())
		if err != nil {
			return nil, err
		}
		defer db.Close()
		if err := db.Migrate(ctx, pxe.Migrations()); err != nil {
			return nil, err
		}
		for _, a := range apps {
			if err := pxe.RegisterImage(ctx, db, a.Name, a.Digest, a.Size); err != nil {
				return nil, err
			}
			rel, err := filepath.Rel(stage, blobs.Path(a.Digest))
			if err != nil {
				return nil, err
			}
			files = append(files, carriedFile{path: filepath.ToSlash(rel), src: a.File, size: a.Size, digest: a.Digest})
		}
		if err := db.Close(); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// withCarried is a source tree: the staged directory, then the carried
// files (their directories are in the stage, so parents come first).
type withCarried struct {
	disk.Source
	files []carriedFile
	meter *Meter // counts the carried bytes written (nil: none)
}

func (w withCarried) Walk(ctx context.Context, fn func(e *disk.Entry, r io.Reader) error) error {
	if err := w.Source.Walk(ctx, fn); err != nil {
		return err
	}
	for _, f := range w.files {
		if err := func() error {
			in, err := os.Open(f.src)
			if err != nil {
				return fmt.Errorf("carried file: %w", err)
			}
			defer in.Close()
			e := &disk.Entry{Path: f.path, Mode: datadir.FileMode, ModTime: time.Now(), Size: f.size}
			return fn(e, &verifyingReader{r: in, want: f.digest, left: f.size, name: f.src, h: sha256.New(), meter: w.meter})
		}(); err != nil {
			return err
		}
	}
	return nil
}

// verifyingReader checks a carried image's digest as it is written: the
// read that completes its size fails if the content is not what the
// manifest says.
type verifyingReader struct {
	r     io.Reader
	want  blobstore.Digest
	left  int64
	name  string
	h     hash.Hash
	meter *Meter
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > v.left {
		p = p[:v.left]
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.left -= int64(n)
	if v.meter != nil && n > 0 {
		v.meter.Add(int64(n))
	}
	if v.left == 0 && v.want != "" {
		if got := "sha256:" + hex.EncodeToString(v.h.Sum(nil)); got != string(v.want) {
			return n, fmt.Errorf("%s: content is %s, the medium's manifest says %s: a damaged medium", v.name, got, v.want)
		}
	}
	if errors.Is(err, io.EOF) {
		if v.left > 0 {
			return n, fmt.Errorf("%s: %w: %d bytes short", v.name, io.ErrUnexpectedEOF, v.left)
		}
		err = nil
	}
	return n, err
}

// Carry puts appliance images (name -> host path) on an install ISO
// spec: each at images/NAME.img, and the manifest, written into dir,
// at ManifestPath.
func Carry(s iso.Spec, images map[string]string, dir string) (iso.Spec, Manifest, error) {
	m, err := NewManifest(images)
	if err != nil {
		return s, m, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return s, m, err
	}
	mp := filepath.Join(dir, "appliances.json")
	if err := os.WriteFile(mp, append(b, '\n'), 0o644); err != nil {
		return s, m, fmt.Errorf("carried appliances: %w", err)
	}
	extra := map[string]string{ManifestPath: mp}
	for n, p := range images {
		extra["images/"+n+".img"] = p
	}
	for k, v := range s.Extra {
		extra[k] = v
	}
	s.Extra = extra
	return s, m, nil
}
