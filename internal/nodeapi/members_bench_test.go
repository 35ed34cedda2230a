package nodeapi

import (
	"fmt"
	"slices"
	"testing"
)

// A node holding ten groups of 1,000 members each is answered with one
// address added to one group and the nine others unchanged: what a node
// does at each member-list update of a launch burst.
func BenchmarkHeldMembersApply(b *testing.B) {
	benchHeldMembersApply(b, 1, nil)
}

// The same answers to 100 nodes of one process, as bench/scale's
// simulated nodes get them: each applying every delta itself, and sharing
// the steps (MemberSteps). One op is one answer to one node.
func BenchmarkHeldMembersApplyNodes(b *testing.B) {
	b.Run("own", func(b *testing.B) { benchHeldMembersApply(b, 100, nil) })
	b.Run("shared", func(b *testing.B) { benchHeldMembersApply(b, 100, &MemberSteps{}) })
}

func benchHeldMembersApply(b *testing.B, nodes int, steps *MemberSteps) {
	const groups, size = 10, 1000
	lists := make([][]string, groups)
	for g := range lists {
		for i := range size {
			lists[g] = append(lists[g], fmt.Sprintf("10.%d.%d.%d", g, i/250, i%250+1))
		}
	}
	held := make([]HeldMembers, nodes)
	whole := make([]SecurityGroup, groups)
	for g := range whole {
		whole[g] = SecurityGroup{ID: fmt.Sprintf("sg-%d", g), Members: lists[g], MembersVersion: MembersVersion(lists[g])}
	}
	for n := range held {
		held[n].Steps = steps
		if err := held[n].Apply(slices.Clone(whole)); err != nil {
			b.Fatal(err)
		}
	}
	grown := append(append([]string(nil), lists[0]...), "10.0.9.9")
	SortMembers(grown)
	grownVersion := MembersVersion(grown)
	b.ResetTimer()
	for i := range b.N {
		answer := make([]SecurityGroup, groups)
		for g := range answer {
			v := whole[g].MembersVersion
			answer[g] = SecurityGroup{ID: whole[g].ID, MembersVersion: v, MembersDelta: &MembersDelta{Base: v}}
		}
		// Back and forth, so each answer's delta applies to what is held.
		if (i/nodes)%2 == 0 {
			answer[0].MembersVersion, answer[0].MembersDelta.Added = grownVersion, []string{"10.0.9.9"}
		} else {
			answer[0].MembersDelta = &MembersDelta{Base: grownVersion, Removed: []string{"10.0.9.9"}}
		}
		if err := held[i%nodes].Apply(answer); err != nil {
			b.Fatal(err)
		}
	}
}
