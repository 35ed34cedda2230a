package nodeapi

import (
	"strings"
	"testing"
)

func TestParseIdentity(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	// As the installer writes it (pxe's install profile).
	id, err := ParseIdentity([]byte(`{
  "hostname": "compute-0-0",
  "cluster": "c1",
  "appliance": "compute",
  "controllerUrl": "https://10.1.0.1:8774",
  "enrollmentToken": "ibt1.secret.` + fp + `"
}`))
	if err != nil {
		t.Fatal(err)
	}
	if id.Hostname != "compute-0-0" || id.Cluster != "c1" || id.ControllerURL != "https://10.1.0.1:8774" || id.CAFingerprint != fp {
		t.Fatalf("got %+v", id)
	}
	again, err := ParseIdentity(id.Marshal())
	if err != nil || again != id {
		t.Fatalf("round trip: %+v %v", again, err)
	}
	for _, bad := range []string{
		`controller = https://x:8774`,        // the old key=value shape
		`{"controller": "https://x:8774"}`,   // unknown key
		`{"controllerUrl": "http://x:8774"}`, // not https
		`{"enrollmentToken": "nope"}`,        // malformed token
		`{"caFingerprint": "` + strings.Repeat("cd", 32) + `", "enrollmentToken": "ibt1.s.` + fp + `"}`, // disagree
	} {
		if _, err := ParseIdentity([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		} else {
			t.Logf("%s: %v", bad, err)
		}
	}
}

func FuzzParseIdentity(f *testing.F) {
	f.Add(`{"hostname":"h","controllerUrl":"https://x:1","enrollmentToken":"ibt1.a.` + strings.Repeat("0f", 32) + `"}`)
	f.Add(`{}`)
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseIdentity([]byte(s))
		if err != nil {
			return
		}
		if _, err := ParseIdentity(id.Marshal()); err != nil {
			t.Fatalf("%q parsed to %+v, which does not parse again: %v", s, id, err)
		}
	})
}
