package nodeapi

import (
	"errors"
	"slices"
	"testing"
)

// A version names the content: the same set in any order has the same
// version (controllers read lists in their own order), another set
// another one, and the empty list has one too (a peer group with no
// members is still a list a node holds).
func TestMembersVersion(t *testing.T) {
	a := MembersVersion([]string{"10.0.0.2", "10.0.0.10", "10.0.0.9"})
	if b := MembersVersion([]string{"10.0.0.9", "10.0.0.10", "10.0.0.2"}); a != b {
		t.Fatalf("same set, two versions: %s %s", a, b)
	}
	if c := MembersVersion([]string{"10.0.0.2", "10.0.0.10"}); c == a {
		t.Fatalf("another set, same version %s", c)
	}
	// The separator keeps concatenations apart.
	if MembersVersion([]string{"10.0.0.1", "0.0.0.2"}) == MembersVersion([]string{"10.0.0.10", ".0.0.2"}) {
		t.Fatal("two lists with one concatenation share a version")
	}
	if e := MembersVersion(nil); e == "" || e != MembersVersion([]string{}) {
		t.Fatalf("empty list version %q", e)
	}
	// Pinned (sha256 of "10.0.0.1\n", 12 bytes): a version is computed the same by every controller and
	// agent release, or mixed fleets send whole lists for nothing.
	if got, want := MembersVersion([]string{"10.0.0.1"}), "810ab5df760625acb92978e2"; got != want {
		t.Fatalf("version of [10.0.0.1] is %s, want %s", got, want)
	}
}

func TestDiffMembers(t *testing.T) {
	added, removed := DiffMembers([]string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, []string{"10.0.0.3", "10.0.0.4", "10.0.0.1"})
	if !slices.Equal(added, []string{"10.0.0.4"}) || !slices.Equal(removed, []string{"10.0.0.2"}) {
		t.Fatalf("added %v removed %v", added, removed)
	}
	if a, r := DiffMembers(nil, nil); a != nil || r != nil {
		t.Fatalf("nothing to nothing: %v %v", a, r)
	}
}

func group(id string, ms ...string) SecurityGroup {
	return SecurityGroup{ID: id, Members: ms, MembersVersion: MembersVersion(ms)}
}

func TestHeldMembersApply(t *testing.T) {
	var h HeldMembers
	if h.Query() != "" {
		t.Fatalf("nothing held, query %q", h.Query())
	}
	sg1 := group("sg-1", "10.0.0.2", "10.0.0.10")
	sg2 := group("sg-2")
	// A group without a version (an old controller's) is whole and not held.
	old := SecurityGroup{ID: "sg-0", Members: []string{"10.9.9.9"}}
	gs := []SecurityGroup{old, sg1, sg2}
	if err := h.Apply(gs); err != nil {
		t.Fatal(err)
	}
	if q := h.Query(); q != "sg-1:"+sg1.MembersVersion+",sg-2:"+sg2.MembersVersion {
		t.Fatalf("query %q", q)
	}
	// A delta onto the held list: the whole list, in address order.
	next := []string{"10.0.0.9", "10.0.0.10", "10.0.0.11"}
	gs = []SecurityGroup{
		{ID: "sg-1", MembersVersion: MembersVersion(next),
			MembersDelta: &MembersDelta{Base: sg1.MembersVersion, Added: []string{"10.0.0.11", "10.0.0.9"}, Removed: []string{"10.0.0.2"}}},
		{ID: "sg-2", MembersVersion: sg2.MembersVersion, MembersDelta: &MembersDelta{Base: sg2.MembersVersion}},
	}
	if err := h.Apply(gs); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gs[0].Members, next) || len(gs[1].Members) != 0 {
		t.Fatalf("applied: %+v", gs)
	}
	// A delta from a version not held: refused, and nothing held after.
	bad := []SecurityGroup{{ID: "sg-1", MembersVersion: "ffff", MembersDelta: &MembersDelta{Base: sg1.MembersVersion}}}
	if err := h.Apply(bad); !errors.Is(err, ErrMembersBase) {
		t.Fatalf("stale base: %v", err)
	}
	if h.Query() != "" {
		t.Fatalf("after a refused delta the node still says it holds %q", h.Query())
	}
	// A delta whose result is not the version named: refused.
	h = HeldMembers{}
	if err := h.Apply([]SecurityGroup{group("sg-1", "10.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	wrong := []SecurityGroup{{ID: "sg-1", MembersVersion: MembersVersion([]string{"10.0.0.1", "10.0.0.3"}),
		MembersDelta: &MembersDelta{Base: MembersVersion([]string{"10.0.0.1"}), Added: []string{"10.0.0.2"}}}}
	if err := h.Apply(wrong); !errors.Is(err, ErrMembersBase) {
		t.Fatalf("wrong result: %v", err)
	}
	// Groups the answer no longer names are forgotten.
	h = HeldMembers{}
	_ = h.Apply([]SecurityGroup{group("sg-1", "10.0.0.1"), group("sg-2", "10.0.0.2")})
	_ = h.Apply([]SecurityGroup{group("sg-2", "10.0.0.2")})
	if q := h.Query(); q != "sg-2:"+MembersVersion([]string{"10.0.0.2"}) {
		t.Fatalf("query %q", q)
	}
}

func TestParseHeldMembers(t *testing.T) {
	m, err := ParseHeldMembers("sg-1:abc,sg-2:def")
	if err != nil || len(m) != 2 || m["sg-1"] != "abc" || m["sg-2"] != "def" {
		t.Fatalf("%v %v", m, err)
	}
	if m, err := ParseHeldMembers(""); err != nil || m != nil {
		t.Fatalf("empty: %v %v", m, err)
	}
	for _, bad := range []string{"sg-1", "sg-1:", ":abc", "sg-1:abc,"} {
		if _, err := ParseHeldMembers(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseHeldMembers(f *testing.F) {
	f.Add("sg-1:abc,sg-2:def")
	f.Add("")
	f.Add("a:b:c")
	f.Fuzz(func(t *testing.T, q string) {
		m, err := ParseHeldMembers(q)
		if err != nil {
			return
		}
		var h HeldMembers
		for g, v := range m {
			if h.lists == nil {
				h.lists = map[string]heldList{}
			}
			h.lists[g] = heldList{version: v}
		}
		// What a node sends reads back as what it holds.
		back, err := ParseHeldMembers(h.Query())
		if err != nil || len(back) != len(m) {
			t.Fatalf("%q -> %q: %v %v", q, h.Query(), back, err)
		}
	})
}
