package pxe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"ironbark/pxe/ra"
	"ironbark/pxe/tftp"
)

// bootLoaderNames are the iPXE builds DHCP points PXE firmware at: BIOS, then
// UEFI x86-64 (snponly.efi, or ipxe.efi with its own drivers).
var bootLoaderNames = [...]string{"undionly.kpxe", "snponly.efi", "ipxe.efi"}

// newTFTP loads the iPXE boot loaders from dir into an in-memory TFTP
// server: only these files are served, whatever else dir holds.
func newTFTP(dir string, log *slog.Logger) (*tftp.Server, error) {
	srv, err := tftp.New(tftp.Config{Logger: log})
	if err != nil {
		return nil, err
	}
	n := 0
	for _, name := range bootLoaderNames {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("tftp: %w", err)
		}
		if err := srv.Add(name, data); err != nil {
			return nil, err
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("tftp: none of %v in %s (install Debian's ipxe package)", bootLoaderNames, dir)
	}
	return srv, nil
}

// extraServices are TFTP (for PXE firmware that is not iPXE yet) and
// router advertisements with lifetime 0 (so iPXE does not wait for IPv6).
func extraServices(cfg ServiceConfig, ip netip.Addr, log *slog.Logger) ([]func(context.Context) error, error) {
	t, err := newTFTP(cfg.TFTPDir, log.With("part", "tftp"))
	if err != nil {
		return nil, err
	}
	adv, err := ra.New(ra.Config{Interface: cfg.Interface, Logger: log.With("part", "ra")})
	if err != nil {
		return nil, err
	}
	return []func(context.Context) error{
		func(ctx context.Context) error {
			defer t.Close()
			return t.ListenAndServe(ctx, net.JoinHostPort(ip.String(), "69"))
		},
		adv.Run,
	}, nil
}
