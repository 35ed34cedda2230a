package pxe

import (
	"context"
	"fmt"

	"ironbark/internal/sshkeys"
	"ironbark/roll"
)

// KeySource gives the OpenSSH public keys root accepts on an installed
// host (authorized_keys lines; "" for none). The profile carries them, so
// they are the frontend's at each install, not the image's build.
type KeySource interface {
	AuthorizedKeys(ctx context.Context, h Host) (string, error)
}

// GraphSource gives the enabled rolls' graph (roll.Registry does).
type GraphSource interface {
	Graph(ctx context.Context) (*roll.Graph, error)
}

// AttrKeys resolves a host's ssh_authorized_keys attribute (roll.SSHKeysAttr)
// through Rocks' chain, global < os < appliance < rack < host.
type AttrKeys struct {
	Attrs *roll.Attrs
	// Graph, when set, adds the rolls' defaults and the appliances'
	// attributes under the stored ones; nil resolves the stored ones only.
	Graph GraphSource
}

// AuthorizedKeys implements KeySource. A value that does not parse (one
// stored before `attr set` checked it) is an error naming the attribute
// and line: a node is not installed with half its keys.
func (a AttrKeys) AuthorizedKeys(ctx context.Context, h Host) (string, error) {
	var g *roll.Graph
	if a.Graph != nil {
		var err error
		if g, err = a.Graph.Graph(ctx); err != nil {
			return "", fmt.Errorf("keys of %s: %w", h.Name, err)
		}
	}
	as, err := a.Attrs.Resolve(ctx, g, roll.Target{Host: roll.Host{Name: h.Name, Appliance: h.Appliance, Rack: h.Rack, Rank: h.Rank, Cluster: h.Cluster}})
	if err != nil {
		return "", fmt.Errorf("keys of %s: %w", h.Name, err)
	}
	v := roll.AttrMap(as)[roll.SSHKeysAttr]
	if _, err := sshkeys.Parse(v); err != nil {
		return "", fmt.Errorf("keys of %s: attribute %s: %w (fix it with `ironbark attr set %s ...`)", h.Name, roll.SSHKeysAttr, err, roll.SSHKeysAttr)
	}
	return v, nil
}
