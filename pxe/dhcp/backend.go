package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/iana"
)

// ErrIgnore is returned by Backend.Assign for clients the server must not
// answer (an unknown MAC while discovery is off). The server stays silent
// and logs the MAC once.
var ErrIgnore = errors.New("dhcp: client ignored")

// Backend decides, per client, whether and how it is answered. It is the
// policy half of the server; package pxe implements it with its hosts table
// and discovery. The server calls Assign for every DISCOVER and REQUEST, so
// it must be cheap for known clients and safe for concurrent use.
type Backend interface {
	// Assign decides the answer for a client: a static address for a known
	// host (Binding.IP set), a pool address (Binding.IP zero: the server
	// allocates one from its Pool and the same MAC keeps getting it back),
	// or ErrIgnore. Any other error is logged and the client gets no answer
	// this time (it retries).
	Assign(ctx context.Context, c ClientInfo) (*Binding, error)
}

// BackendFunc adapts a function to Backend.
type BackendFunc func(ctx context.Context, c ClientInfo) (*Binding, error)

// Assign calls f.
func (f BackendFunc) Assign(ctx context.Context, c ClientInfo) (*Binding, error) { return f(ctx, c) }

// ClientInfo is what the server learned about a client from its request.
type ClientInfo struct {
	// MAC is the client hardware address (chaddr), always 6 bytes.
	MAC net.HardwareAddr
	// MessageType is DISCOVER or REQUEST (the server calls Assign for both).
	MessageType string
	// Arch is the client system architecture (option 93, first value):
	// iana.INTEL_X86PC (0) for BIOS, iana.EFI_X86_64 (7) or iana.EFI_BC (9)
	// for UEFI x86-64. Valid only when HasArch is true.
	Arch    iana.Arch
	HasArch bool
	// PXE is true when the client identifies as PXE firmware (vendor class,
	// option 60, starting with "PXEClient") or sent option 93. Only PXE and
	// iPXE clients get a boot file.
	PXE bool
	// IsIPXE is true for iPXE (user class option 77 "iPXE", or iPXE's own
	// option 175 in the request). iPXE clients should be given the HTTP URL
	// of their script as BootFile.
	IsIPXE bool
	// VendorClass is option 60 as sent ("PXEClient:Arch:00007:UNDI:003016").
	VendorClass string
	// RequestedIP is option 50 (or ciaddr when renewing); zero if absent.
	RequestedIP netip.Addr
	// Hostname is option 12 as sent by the client; may be empty.
	Hostname string
}

// UEFI reports whether the client is x86-64 UEFI firmware (arch 7 or 9).
func (c ClientInfo) UEFI() bool {
	return c.HasArch && (c.Arch == iana.EFI_X86_64 || c.Arch == iana.EFI_BC)
}

// Binding is the Backend's answer for one client.
type Binding struct {
	// IP is the client's address. Zero means "allocate from the pool": the
	// lease store remembers the MAC and hands it the same address again.
	// A set IP is a static lease; it should lie inside Config.Subnet. If a
	// pool lease of another MAC holds it, that lease is taken over.
	IP netip.Addr
	// Hostname is sent as option 12 (e.g. "compute-0-3"); empty: none.
	Hostname string
	// BootFile is the boot file name (option 67 and the file field). For
	// iPXE clients it should be the HTTP URL of the node's script. Empty for
	// a PXE (non-iPXE) client: the server picks by architecture
	// (Config.BIOSBootFile, Config.UEFIBootFile). Empty for iPXE: no boot
	// file. Non-PXE clients (an installed OS) never get one.
	BootFile string
	// NextServer is siaddr, the TFTP server; zero: Config.ServerIP.
	NextServer netip.Addr
	// LeaseTime overrides Config.LeaseTime when non-zero.
	LeaseTime time.Duration
}
