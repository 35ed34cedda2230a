package controller

import (
	"context"
	"errors"

	"ironbark/internal/nodeapi"
)

// The controller has two halves that meet here: the EC2 side (accounts,
// instances and the other EC2 resources, in this package and controller/ec2)
// and the cluster side (clusters, nodes, enrollment, scheduling, the node
// API; controller/cluster). Each consumes the other through one interface,
// declared by the consumer: Placer here, cluster.InstanceLedger there.

// Zone is an availability zone (a cluster) as DescribeAvailabilityZones
// shows it.
type Zone struct {
	Name  string
	State string // available | unavailable (no live node)
	// Free and Max count instances of each VM type that fit, summed over
	// the zone's live nodes (Eucalyptus' "verbose" listing).
	Free map[string]int
	Max  map[string]int
}

// ErrInsufficientCapacity is returned by Placer.Place when the instances do
// not fit; RunInstances maps it to InsufficientInstanceCapacity.
var ErrInsufficientCapacity = errors.New("insufficient instance capacity")

// ErrNoSuchZone is returned by Placer.Place for an unknown zone.
var ErrNoSuchZone = errors.New("no such availability zone")

// Placer is what the EC2 side needs from the cluster side.
type Placer interface {
	Zones(ctx context.Context) ([]Zone, error)
	// Place picks a node for each of n instances of vt in zone ("" means
	// any zone, by the scheduler's policy) and returns the zone and the node
	// IDs. It does not persist anything: the caller records the instances
	// with their node in one transaction, which is what reserves capacity.
	Place(ctx context.Context, zone string, vt nodeapi.VMType, n int) (string, []string, error)
}
