package cluster

import (
	"context"
	"time"

	"ironbark/internal/nodeapi"
)

// SecurityGroupLedger is the part of the ledger that knows security groups
// (controller.Cloud is one). When the Ledger has it, each node's desired
// state carries the groups of its instances and the members of the peer
// groups their rules name, and its ETag covers them: a rule or membership
// change wakes the node's long poll like a launch does.
type SecurityGroupLedger interface {
	// SecurityGroupsOnNode sets each spec's SecurityGroups and returns the
	// groups they are in plus the peer groups their rules name. Every
	// read it answers from starts at or after fresh: a read of a group's
	// members that another node's answer started after fresh may serve
	// this one too.
	SecurityGroupsOnNode(ctx context.Context, nodeID string, specs []nodeapi.InstanceSpec, fresh time.Time) ([]nodeapi.SecurityGroup, error)
}
