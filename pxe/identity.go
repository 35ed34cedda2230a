package pxe

import (
	"context"
	"fmt"
	"time"

	"ironbark/controller/cluster"
	"ironbark/internal/pki"
	"ironbark/pxe/bootapi"
)

// TokenIdentity issues each install attempt of a host one enrollment token
// from the controller's cluster registry, bound to the host's name, MAC
// and address (its DHCP lease), so the node agent can enroll on first boot
// and nothing else can.
type TokenIdentity struct {
	Registry      *cluster.Registry
	CA            *pki.CA
	ControllerURL string
	TTL           time.Duration // default cluster.DefaultTokenTTL
}

// Identity implements IdentityIssuer. It fails with cluster.ErrTokenIssued
// when the attempt's token was already issued.
func (t TokenIdentity) Identity(ctx context.Context, h Host) (bootapi.Identity, error) {
	id, _ := StaticIdentity{ControllerURL: t.ControllerURL}.Identity(ctx, h)
	if h.Cluster == "" {
		return id, nil
	}
	ttl := t.TTL
	if ttl <= 0 {
		ttl = cluster.DefaultTokenTTL
	}
	tok, err := t.Registry.InstallToken(ctx, t.CA,
		cluster.HostBinding{Cluster: h.Cluster, Hostname: h.Name, MAC: h.MAC, IP: h.IP, Attempt: h.InstallAttempt}, ttl)
	if err != nil {
		return bootapi.Identity{}, fmt.Errorf("enrollment token for %s in cluster %s: %w", h.Name, h.Cluster, err)
	}
	id.EnrollmentToken = tok
	id.CAFingerprint = t.CA.Fingerprint()
	return id, nil
}

// Revoke implements IdentityIssuer.
func (t TokenIdentity) Revoke(ctx context.Context, h Host) error {
	_, err := t.Registry.RevokeHostTokens(ctx, h.Name)
	return err
}
