package pxe

import (
	"context"
	"net/netip"
)

// extraServices are TFTP and router advertisements (pxe/tftp, pxe/ra).
func extraServices(cfg ServiceConfig, ip netip.Addr) []func(context.Context) error {
	return nil
}
