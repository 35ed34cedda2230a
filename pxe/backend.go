package pxe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"ironbark/pxe/bootapi"
	"ironbark/pxe/dhcp"
	"ironbark/pxe/leases"
)

// DHCPBackend is the hosts table and discovery seen from the DHCP server:
// known hosts get their static address, unknown MACs become hosts while a
// discovery session runs (and get a pool address pinned to them), and are
// ignored otherwise.
type DHCPBackend struct {
	Hosts     *Hosts
	Discovery *Discovery
	Leases    *leases.Store
	BaseURL   string // HTTP boot server, for iPXE clients
	Log       *slog.Logger
}

// Assign implements dhcp.Backend.
func (b *DHCPBackend) Assign(ctx context.Context, c dhcp.ClientInfo) (*dhcp.Binding, error) {
	// A new host is created with its address, or not at all: the lease is
	// pinned first and given back if discovery refuses the MAC after all.
	pinned := false
	h, isNew, err := b.Discovery.Discover(ctx, c.MAC.String(), func(ctx context.Context) (string, error) {
		l, err := b.Leases.Pin(ctx, c.MAC, "")
		if err != nil {
			return "", err
		}
		pinned = true
		return l.IP.String(), nil
	})
	if err != nil && pinned {
		if ferr := b.Leases.Forget(ctx, c.MAC); ferr != nil {
			b.Log.Error("give back the address of a refused MAC", "mac", c.MAC, "err", ferr)
		}
	}
	if errors.Is(err, ErrRefused) {
		// Counted in the session, which `discover` reports; the DHCP
		// server logs the ignored MAC once.
		b.Log.Debug("discovery refused a MAC", "mac", c.MAC, "why", err)
		return nil, dhcp.ErrIgnore
	}
	if errors.Is(err, ErrHostNotFound) {
		return nil, dhcp.ErrIgnore
	}
	if err != nil {
		return nil, err
	}
	if isNew {
		b.Log.Info("discovered host", "host", h.Name, "mac", h.MAC, "appliance", h.Appliance, "rack", h.Rack)
	}
	if h.IP == "" {
		l, err := b.Leases.Pin(ctx, c.MAC, h.Name)
		if err != nil {
			return nil, fmt.Errorf("address for %s: %w", h.Name, err)
		}
		if err := b.Hosts.SetIP(ctx, h.Name, l.IP.String()); err != nil {
			return nil, err
		}
		h.IP = l.IP.String()
	}
	ip, err := netip.ParseAddr(h.IP)
	if err != nil {
		return nil, fmt.Errorf("host %s has a bad IP %q: %w", h.Name, h.IP, err)
	}
	bind := &dhcp.Binding{IP: ip, Hostname: h.Name}
	if c.IsIPXE {
		bind.BootFile = b.BaseURL + bootapi.PathScript + h.MAC
	}
	return bind, nil
}
