package pxe

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"ironbark/controller/cluster"
	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
	"ironbark/pxe/bootapi"
)

// getFrom GETs url from a local source address.
func getFrom(t *testing.T, src, url string) (int, []byte) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// tokenIdentity makes the boot server issue tokens from a registry with
// cluster c1, as a frontend does.
func (e *bootEnv) tokenIdentity(t *testing.T, db *store.DB) (*cluster.Registry, *pki.CA) {
	t.Helper()
	ctx := context.Background()
	reg, err := cluster.NewRegistry(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.AddCluster(ctx, "c1", "GREEDY"); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e.boot.Identity = TokenIdentity{Registry: reg, CA: ca, ControllerURL: "https://127.0.0.1:8774"}
	return reg, ca
}

// TestProfileTokenOncePerAttempt: the install profile, which carries the
// node's enrollment token, is served once per install attempt and only to
// the host's own address; a new attempt revokes the previous token.
func TestProfileTokenOncePerAttempt(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newBootEnv(t, db, nil)
		reg, ca := e.tokenIdentity(t, db)
		const mac, ip = "52:54:00:00:20:01", "127.1.0.7"
		if _, err := e.hosts.Add(ctx, AddHost{MAC: mac, IP: ip, Appliance: "compute", Rank: -1, Cluster: "c1"}); err != nil {
			t.Fatal(err)
		}
		attempt := attemptRE.FindStringSubmatch(e.bootScript(t, mac))[1]
		url := e.srv.URL + bootapi.PathInstall + "compute-0-0/profile?attempt=" + attempt

		// A rogue elsewhere on the network: refused, and no token minted.
		if code, b := getFrom(t, "127.0.0.1", url); code != http.StatusForbidden {
			t.Fatalf("profile from another address: %d %s, want 403", code, b)
		}
		if n, _ := reg.TokenCount(ctx, time.Now()); n != 0 {
			t.Fatalf("%d tokens after a refused profile, want 0", n)
		}
		code, b := getFrom(t, ip, url)
		if code != 200 {
			t.Fatalf("profile from the host: %d %s", code, b)
		}
		var p bootapi.Profile
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(p.Identity.EnrollmentToken, "ibt1.") || p.Identity.CAFingerprint != ca.Fingerprint() {
			t.Fatalf("identity %+v", p.Identity)
		}
		// The file the installer writes is the one identity format.
		var file string
		for _, f := range p.Files {
			if f.Path == "ironbark/node.json" {
				file = f.Content
			}
		}
		if _, err := nodeapi.ParseIdentity([]byte(file)); err != nil {
			t.Fatalf("node.json %q: %v", file, err)
		}
		// Twenty more GETs give no more tokens.
		for range 20 {
			if code, _ := getFrom(t, ip, url); code != http.StatusConflict {
				t.Fatalf("second profile of the attempt: %d, want 409", code)
			}
		}
		if n, _ := reg.TokenCount(ctx, time.Now()); n != 1 {
			t.Fatalf("%d live tokens, want 1", n)
		}
		// A new attempt (the host PXE-boots again) revokes that token.
		next := attemptRE.FindStringSubmatch(e.bootScript(t, mac))[1]
		if n, _ := reg.TokenCount(ctx, time.Now()); n != 0 || next == attempt {
			t.Fatalf("%d live tokens after a new attempt, want 0", n)
		}
		// A failed install revokes its token too.
		url = e.srv.URL + bootapi.PathInstall + "compute-0-0/profile?attempt=" + next
		if code, b := getFrom(t, ip, url); code != 200 {
			t.Fatalf("profile of the new attempt: %d %s", code, b)
		}
		body, _ := json.Marshal(bootapi.Progress{Attempt: next, State: bootapi.StateFailed, Error: "disk on fire"})
		resp, err := http.Post(e.srv.URL+bootapi.PathInstall+"compute-0-0/progress", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if n, _ := reg.TokenCount(ctx, time.Now()); n != 0 {
			t.Fatalf("%d live tokens after a failed install, want 0", n)
		}
	})
}

// TestImagesOnlyAppliances: the PXE HTTP server serves the blobs that
// appliances install and nothing else of the blob store.
func TestImagesOnlyAppliances(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newBootEnv(t, db, nil)
		blobs, _ := Layout{DataDir: e.dir}.Blobs()
		tenant, _, err := blobs.Put(ctx, strings.NewReader("a tenant's private image"))
		if err != nil {
			t.Fatal(err)
		}
		app, _, err := e.boot.Images.Image(ctx, "compute")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			digest string
			want   int
		}{{string(app), 200}, {string(tenant), 404}, {"sha256:" + strings.Repeat("0", 64), 404}} {
			path := bootapi.PathImages + strings.Replace(c.digest, ":", "/", 1)
			resp, err := http.Get(e.srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, c.want)
			}
		}
	})
}
