package nodeapi

import (
	"errors"
	"slices"
	"testing"
)

func TestHeldSpecs(t *testing.T) {
	spec := func(id, desired string) InstanceSpec {
		s := InstanceSpec{InstanceID: id, Desired: desired, MAC: "d0:0d:00:00:00:01"}
		s.Version = SpecVersion(s)
		return s
	}
	a, b := spec("i-a", StateRunning), spec("i-b", StateRunning)
	if a.Version == b.Version || SpecVersion(a) != a.Version {
		t.Fatalf("versions: %s %s", a.Version, b.Version)
	}
	var h HeldSpecs
	if q := h.Query(); q != "" {
		t.Fatalf("nothing held: query %q", q)
	}
	d := Desired{Instances: []InstanceSpec{b, a}}
	if err := h.Apply(&d); err != nil {
		t.Fatal(err)
	}
	if q := h.Query(); q != "i-a:"+a.Version+",i-b:"+b.Version {
		t.Fatalf("query %q", q)
	}
	held, err := ParseHeldSpecs(h.Query())
	if err != nil || held["i-a"] != a.Version || held["i-b"] != b.Version {
		t.Fatalf("parse: %v %v", held, err)
	}
	// b kept, a changed, c new: the whole set, in instance order.
	a2, c := spec("i-a", StateTerminated), spec("i-c", StateRunning)
	d = Desired{Instances: []InstanceSpec{c, a2}, Kept: []string{"i-b"}}
	if err := h.Apply(&d); err != nil {
		t.Fatal(err)
	}
	if got := []InstanceSpec{a2, b, c}; !slices.EqualFunc(d.Instances, got, func(x, y InstanceSpec) bool {
		return x.InstanceID == y.InstanceID && x.Version == y.Version && x.Desired == y.Desired
	}) {
		t.Fatalf("merged %+v", d.Instances)
	}
	// A kept spec the node does not hold: ErrSpecsBase, and nothing held.
	d = Desired{Kept: []string{"i-z"}}
	if err := h.Apply(&d); !errors.Is(err, ErrSpecsBase) {
		t.Fatalf("kept spec not held: %v", err)
	}
	if q := h.Query(); q != "" {
		t.Fatalf("after a failed apply the node still holds %q", q)
	}
	// A spec without a version (a controller that knows none) is used but
	// not held.
	d = Desired{Instances: []InstanceSpec{{InstanceID: "i-old"}}}
	if err := h.Apply(&d); err != nil || len(d.Instances) != 1 || h.Query() != "" {
		t.Fatalf("unversioned spec: %v %v %q", err, d.Instances, h.Query())
	}
	for _, bad := range []string{"i-a", "i-a:", ":v", "i-a:v,,"} {
		if _, err := ParseHeldSpecs(bad); err == nil {
			t.Errorf("ParseHeldSpecs(%q): no error", bad)
		}
	}
}
