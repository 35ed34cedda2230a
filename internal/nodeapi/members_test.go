package nodeapi

import (
	"errors"
	"fmt"
	"math/rand/v2"
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

// Deltas merged into the lists held give the same list and version as
// sorting the result whole (what the node did before), over random lists
// and deltas: addresses of both families, strings that are not addresses,
// additions already present and removals not present.
func TestHeldMembersMergeMatchesSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	member := func() string {
		switch rng.IntN(10) {
		case 0:
			return fmt.Sprintf("fd00::%x", rng.IntN(64))
		case 1:
			return fmt.Sprintf("name-%d", rng.IntN(8))
		}
		return fmt.Sprintf("10.0.%d.%d", rng.IntN(3), rng.IntN(40))
	}
	naive := func(base, added, removed []string) []string {
		out := []string{}
		for _, m := range base {
			if !slices.Contains(removed, m) {
				out = append(out, m)
			}
		}
		out = append(out, added...)
		SortMembers(out)
		return slices.Compact(out)
	}
	for round := range 300 {
		var h HeldMembers
		var list []string
		for range rng.IntN(60) {
			list = append(list, member())
		}
		if round%3 == 0 {
			SortMembers(list) // as a controller sends it; else in any order, with duplicates
		}
		whole := slices.Clone(list)
		if err := h.Apply([]SecurityGroup{{ID: "sg-1", Members: whole, MembersVersion: MembersVersion(whole)}}); err != nil {
			t.Fatal(err)
		}
		cur := naive(list, nil, nil)
		version := MembersVersion(list)
		got := whole // what the node's answer last gave
		for step := range 8 {
			var added, removed []string
			for range rng.IntN(4) {
				added = append(added, member())
			}
			for range rng.IntN(4) {
				if len(cur) > 0 && rng.IntN(3) > 0 {
					removed = append(removed, cur[rng.IntN(len(cur))])
				} else {
					removed = append(removed, member())
				}
			}
			want := naive(cur, added, removed)
			gs := []SecurityGroup{{ID: "sg-1", MembersVersion: MembersVersion(want),
				MembersDelta: &MembersDelta{Base: version, Added: added, Removed: removed}}}
			if err := h.Apply(gs); err != nil {
				t.Fatalf("round %d step %d: %v (list %v, +%v -%v)", round, step, err, cur, added, removed)
			}
			if len(added) == 0 && len(removed) == 0 && gs[0].MembersVersion == version {
				// Unchanged: the list as last given, not sorted again.
				want = got
			}
			if !slices.Equal(gs[0].Members, want) {
				t.Fatalf("round %d step %d: %v +%v -%v gave %v, want %v", round, step, cur, added, removed, gs[0].Members, want)
			}
			got = gs[0].Members
			cur, version = naive(want, nil, nil), gs[0].MembersVersion
		}
	}
}

// Nodes sharing MemberSteps: the second node to get a delta takes the
// first one's list (the same array, not a copy), a different change to
// the same base is applied and checked, not taken, and a delta that does
// not give the version it names is refused on every node though another
// node's right step is held.
func TestMemberStepsShared(t *testing.T) {
	var steps MemberSteps
	base := []string{"10.0.0.1", "10.0.0.2", "10.0.0.10"}
	bv := MembersVersion(base)
	nodes := make([]*HeldMembers, 3)
	for i := range nodes {
		nodes[i] = &HeldMembers{Steps: &steps}
		if err := nodes[i].Apply([]SecurityGroup{{ID: "sg-1", Members: slices.Clone(base), MembersVersion: bv}}); err != nil {
			t.Fatal(err)
		}
	}
	grown := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.10"}
	delta := func(added ...string) []SecurityGroup {
		next := append(slices.Clone(base), added...)
		return []SecurityGroup{{ID: "sg-1", MembersVersion: MembersVersion(next), MembersDelta: &MembersDelta{Base: bv, Added: added}}}
	}
	a, b := delta("10.0.0.3"), delta("10.0.0.3")
	if err := nodes[0].Apply(a); err != nil {
		t.Fatal(err)
	}
	if err := nodes[1].Apply(b); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a[0].Members, grown) || !slices.Equal(b[0].Members, grown) {
		t.Fatalf("lists %v and %v, want %v", a[0].Members, b[0].Members, grown)
	}
	if &a[0].Members[0] != &b[0].Members[0] {
		t.Error("the second node applied the delta again instead of taking the first one's list")
	}
	if q := nodes[1].Query(); q != "sg-1:"+MembersVersion(grown) {
		t.Errorf("held %q after the shared step", q)
	}
	c := delta("10.0.0.4")
	if err := nodes[2].Apply(c); err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.0.10"}; !slices.Equal(c[0].Members, want) {
		t.Fatalf("another change to the same base gave %v, want %v", c[0].Members, want)
	}

	// A wrong version named with a change already shared: applied and
	// refused, whatever the others hold.
	for _, h := range nodes[:2] {
		h.Reset()
		if err := h.Apply([]SecurityGroup{{ID: "sg-1", Members: slices.Clone(base), MembersVersion: bv}}); err != nil {
			t.Fatal(err)
		}
	}
	bad := delta("10.0.0.3")
	bad[0].MembersVersion = MembersVersion([]string{"10.0.0.9"})
	if err := nodes[0].Apply(bad); !errors.Is(err, ErrMembersBase) {
		t.Fatalf("a delta naming the wrong version: %v, want ErrMembersBase", err)
	}
	if err := nodes[1].Apply(delta("10.0.0.3")); err != nil {
		t.Fatalf("the right step after a wrong one: %v", err)
	}
}
