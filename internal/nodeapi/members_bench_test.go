package nodeapi

import (
	"fmt"
	"testing"
)

// A node holding ten groups of 1,000 members each is answered with one
// address added to one group and the nine others unchanged: what a node
// does at each member-list update of a launch burst.
func BenchmarkHeldMembersApply(b *testing.B) {
	const groups, size = 10, 1000
	lists := make([][]string, groups)
	for g := range lists {
		for i := range size {
			lists[g] = append(lists[g], fmt.Sprintf("10.%d.%d.%d", g, i/250, i%250+1))
		}
	}
	var h HeldMembers
	whole := make([]SecurityGroup, groups)
	for g := range whole {
		whole[g] = SecurityGroup{ID: fmt.Sprintf("sg-%d", g), Members: lists[g], MembersVersion: MembersVersion(lists[g])}
	}
	if err := h.Apply(whole); err != nil {
		b.Fatal(err)
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
		if i%2 == 0 {
			answer[0].MembersVersion, answer[0].MembersDelta.Added = grownVersion, []string{"10.0.9.9"}
		} else {
			answer[0].MembersDelta = &MembersDelta{Base: grownVersion, Removed: []string{"10.0.9.9"}}
		}
		if err := h.Apply(answer); err != nil {
			b.Fatal(err)
		}
	}
}
