package pxe

import (
	"context"
	"fmt"
	"time"

	"ironbark/controller/cluster"
	"ironbark/internal/pki"
	"ironbark/pxe/bootapi"
)

// TokenIdentity issues each installing node a one-time enrollment token
// for its cluster from the controller's cluster registry, so the node
// agent can enroll on first boot.
type TokenIdentity struct {
	Registry      *cluster.Registry
	CA            *pki.CA
	ControllerURL string
	TTL           time.Duration // default cluster.DefaultTokenTTL
}

// Identity implements IdentityIssuer.
func (t TokenIdentity) Identity(ctx context.Context, h Host) (bootapi.Identity, error) {
	id, _ := StaticIdentity{ControllerURL: t.ControllerURL}.Identity(ctx, h)
	if h.Cluster == "" {
		return id, nil
	}
	ttl := t.TTL
	if ttl <= 0 {
		ttl = cluster.DefaultTokenTTL
	}
	tok, err := t.Registry.NewToken(ctx, t.CA, h.Cluster, ttl)
	if err != nil {
		return bootapi.Identity{}, fmt.Errorf("enrollment token for %s in cluster %s: %w", h.Name, h.Cluster, err)
	}
	id.EnrollmentToken = tok
	return id, nil
}
