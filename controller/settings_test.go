package controller

import (
	"os"
	"path/filepath"
	"testing"

	"ironbark/internal/datadir"
	"ironbark/internal/nodeapi"
)

func TestSettings(t *testing.T) {
	dir := t.TempDir()
	if s, err := LoadSettings(dir); err != nil || s.DB != "" {
		t.Fatalf("missing file: %+v %v", s, err)
	}
	if u, _ := StoreURL(dir, ""); u != filepath.Join(dir, "ironbark.db") {
		t.Fatalf("default store %q", u)
	}
	want := Settings{Region: "lab", DB: "postgres://x/y", PublicAddresses: []string{"192.0.2.0/28"},
		VMTypes: []nodeapi.VMType{{Name: "tiny", Cores: 1, MemoryMiB: 64, DiskGiB: 1}}}
	if err := SaveSettings(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadSettings(dir)
	if err != nil || got.Region != "lab" || got.VMTypes[0].Name != "tiny" || got.PublicAddresses[0] != "192.0.2.0/28" {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if u, _ := StoreURL(dir, ""); u != "postgres://x/y" {
		t.Fatalf("remembered store %q", u)
	}
	if u, _ := StoreURL(dir, "other.db"); u != "other.db" {
		t.Fatalf("flag store %q", u)
	}
	if err := os.WriteFile(datadir.Dir(dir).Settings(), []byte(`{"vmTypes":[{"name":"x","cores":0}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSettings(dir); err == nil {
		t.Fatal("a VM type without cores was accepted")
	}
	vt := filepath.Join(dir, "vmtypes.json")
	if err := os.WriteFile(vt, []byte(`[{"name":"m1.small","cores":1,"memoryMiB":512,"diskGiB":8}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	vts, err := LoadVMTypes(vt)
	if err != nil || len(vts) != 1 || vts[0].MemoryMiB != 512 {
		t.Fatalf("vm types file: %+v %v", vts, err)
	}
	if _, err := parseAddressPool([]string{"198.51.100.10-198.51.100.5"}); err == nil {
		t.Fatal("a backwards range was accepted")
	}
	p, err := parseAddressPool([]string{"198.51.100.10-198.51.100.11", "203.0.113.0/30"})
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	var got4 []string
	for {
		ip, ok := p.first(used)
		if !ok {
			break
		}
		used[ip] = true
		got4 = append(got4, ip)
	}
	if len(got4) != 4 || got4[2] != "203.0.113.1" || got4[3] != "203.0.113.2" {
		t.Fatalf("pool order: %v", got4)
	}
}
