package pxe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"ironbark/controller/cluster"
	"ironbark/images/blobstore"
	"ironbark/pxe/bootapi"
)

// IdentityIssuer gives an installed node what it needs to join the cloud:
// the controller URL and an enrollment token for its cluster, one per
// install attempt (h.InstallAttempt), and revokes it when the attempt ends
// without one.
type IdentityIssuer interface {
	// Identity fails with an error matching ErrIdentityIssued when the
	// attempt already got its identity.
	Identity(ctx context.Context, h Host) (bootapi.Identity, error)
	Revoke(ctx context.Context, h Host) error
}

// ErrIdentityIssued is returned when an install attempt asks for its
// identity (its one-time token) a second time.
var ErrIdentityIssued = cluster.ErrTokenIssued

// StaticIdentity issues identities with a fixed controller URL and no
// token (for frontends whose controller issues tokens at enrollment).
type StaticIdentity struct{ ControllerURL string }

// Identity implements IdentityIssuer.
func (s StaticIdentity) Identity(_ context.Context, h Host) (bootapi.Identity, error) {
	return bootapi.Identity{Hostname: h.Name, Cluster: h.Cluster, Appliance: h.Appliance,
		ControllerURL: s.ControllerURL}, nil
}

// Revoke implements IdentityIssuer: there is nothing to revoke.
func (StaticIdentity) Revoke(context.Context, Host) error { return nil }

// HTTPBoot is the HTTP half of PXE: iPXE scripts, installer kernel and
// initramfs, install profiles, images and progress reports.
type HTTPBoot struct {
	Script    ScriptConfig
	Hosts     *Hosts
	Discovery *Discovery
	// BootDir holds vmlinuz and installer.img.
	BootDir  string
	Images   ApplianceImages
	Identity IdentityIssuer
	// Keys gives root's SSH keys on each installed host; nil gives none
	// (the image's own stay).
	Keys KeySource
	Log  *slog.Logger
}

// Handler returns the boot server's routes.
func (b *HTTPBoot) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot/ipxe", b.chain)
	mux.HandleFunc("GET "+bootapi.PathScript+"{mac}", b.script)
	mux.HandleFunc("GET "+bootapi.PathKernel, b.file("vmlinuz"))
	mux.HandleFunc("GET "+bootapi.PathInitramfs, b.file("installer.img"))
	mux.HandleFunc("GET "+bootapi.PathInstall+"{host}/profile", b.profile)
	mux.HandleFunc("POST "+bootapi.PathInstall+"{host}/progress", b.progress)
	mux.Handle("GET "+bootapi.PathImages, http.StripPrefix(strings.TrimSuffix(bootapi.PathImages, "/"), b.Images.Handler()))
	return mux
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().String()
	}
	return host
}

func writeScript(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(s))
}

func (b *HTTPBoot) chain(w http.ResponseWriter, r *http.Request) {
	writeScript(w, ChainScript(b.Script))
}

func newAttempt() string {
	var p [6]byte
	_, _ = rand.Read(p[:])
	return hex.EncodeToString(p[:])
}

func (b *HTTPBoot) script(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	mac, err := CanonicalMAC(r.PathValue("mac"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// Only DHCP admits new hosts (with an address): a script request for
	// an unknown MAC creates nothing.
	h, isNew, err := b.Discovery.Discover(ctx, mac, nil)
	if errors.Is(err, ErrHostNotFound) {
		writeScript(w, UnknownScript(b.Script, mac))
		return
	}
	if err != nil {
		b.Log.Error("boot script", "mac", mac, "err", err)
		http.Error(w, "boot script: internal error", http.StatusInternalServerError)
		return
	}
	if isNew {
		b.Log.Info("discovered host", "host", h.Name, "mac", mac)
	}
	attempt := ""
	if h.Boot == BootInstall {
		// A new attempt: the previous one's token can no longer enroll.
		if err := b.Identity.Revoke(ctx, h); err != nil {
			b.Log.Error("revoke enrollment token", "host", h.Name, "err", err)
			http.Error(w, "start install: internal error", http.StatusInternalServerError)
			return
		}
		attempt = newAttempt()
		if err := b.Hosts.StartInstall(ctx, h.Name, attempt); err != nil {
			b.Log.Error("start install", "host", h.Name, "err", err)
			http.Error(w, "start install: internal error", http.StatusInternalServerError)
			return
		}
	}
	b.Log.Info("boot script", "host", h.Name, "mac", mac, "action", h.Boot, "attempt", attempt)
	writeScript(w, HostScript(b.Script, h, attempt))
}

func (b *HTTPBoot) file(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(filepath.Join(b.BootDir, name))
		if err != nil {
			b.Log.Error("boot file", "file", name, "err", err)
			http.Error(w, name+" is not installed on this frontend", http.StatusNotFound)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", st.ModTime(), f)
	}
}

func (b *HTTPBoot) profile(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	h, err := b.Hosts.Get(ctx, r.PathValue("host"))
	if errors.Is(err, ErrHostNotFound) {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if err != nil {
		b.Log.Error("profile", "host", r.PathValue("host"), "err", err)
		http.Error(w, "profile: internal error", http.StatusInternalServerError)
		return
	}
	if a := r.URL.Query().Get("attempt"); a == "" || a != h.InstallAttempt || h.Boot != BootInstall {
		http.Error(w, "install attempt "+a+" is not the current one", http.StatusConflict)
		return
	}
	// The profile carries the node's one-time token: only the host's own
	// address (its DHCP lease) gets it.
	if h.IP != "" && remoteIP(r) != h.IP {
		b.Log.Warn("profile refused: request not from the host's address", "host", h.Name, "ip", h.IP, "remote", r.RemoteAddr)
		http.Error(w, "profile of "+h.Name+" is served to "+h.IP+" only", http.StatusForbidden)
		return
	}
	p, err := b.buildProfile(ctx, h)
	if errors.Is(err, ErrIdentityIssued) {
		b.Log.Warn("profile refused: the attempt's token was already issued", "host", h.Name, "attempt", h.InstallAttempt, "remote", r.RemoteAddr)
		http.Error(w, "the profile of this install attempt was already issued; boot the host again for a new attempt", http.StatusConflict)
		return
	}
	if err != nil {
		b.Log.Error("profile", "host", h.Name, "err", err)
		http.Error(w, "profile: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(p)
}

func (b *HTTPBoot) buildProfile(ctx context.Context, h Host) (bootapi.Profile, error) {
	digest, size, err := b.Images.Image(ctx, h.Appliance)
	if err != nil {
		return bootapi.Profile{}, err
	}
	// The keys before the identity: a failure here (a bad attribute)
	// leaves the attempt's one-time token unissued, so the installer's
	// retry succeeds once the attribute is fixed.
	var keys string
	if b.Keys != nil {
		if keys, err = b.Keys.AuthorizedKeys(ctx, h); err != nil {
			return bootapi.Profile{}, err
		}
	}
	id, err := b.Identity.Identity(ctx, h)
	if err != nil {
		return bootapi.Profile{}, err
	}
	return bootapi.Profile{
		Hostname: h.Name,
		Attempt:  h.InstallAttempt,
		Image: bootapi.Image{URL: b.Script.BaseURL + blobstore.URLPath(bootapi.PathImages, digest),
			Digest: string(digest), Size: size},
		Identity: id,
		Files: []bootapi.File{
			{Path: "ironbark/hostname", Mode: 0o644, Content: h.Name + "\n"},
			{Path: "ironbark/node.json", Mode: 0o600, Content: string(id.Marshal())},
		},
		AuthorizedKeys: keys,
	}, nil
}

func (b *HTTPBoot) progress(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("host")
	var p bootapi.Progress
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&p); err != nil {
		http.Error(w, "progress: "+err.Error(), http.StatusBadRequest)
		return
	}
	err := b.Hosts.Report(r.Context(), name, p.Attempt, p.State, p.Percent, p.Step, p.Error)
	switch {
	case errors.Is(err, ErrHostNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	case errors.Is(err, ErrStaleAttempt):
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		b.Log.Error("progress", "host", name, "err", err)
		http.Error(w, "progress: "+err.Error(), http.StatusBadRequest)
		return
	}
	switch p.State {
	case bootapi.StateDone:
		b.Log.Info("install done; boot action now os", "host", name, "attempt", p.Attempt)
	case bootapi.StateFailed:
		b.Log.Warn("install failed; boot action stays install", "host", name, "attempt", p.Attempt, "err", p.Error)
		// The failed attempt's token dies with it.
		if err := b.Identity.Revoke(r.Context(), Host{Name: name}); err != nil {
			b.Log.Error("revoke enrollment token", "host", name, "err", err)
		}
	default:
		b.Log.Debug("install progress", "host", name, "percent", p.Percent, "step", p.Step)
	}
	w.WriteHeader(http.StatusNoContent)
}
