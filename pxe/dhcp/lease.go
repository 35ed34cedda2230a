package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Leases is the server's lease database: it hands out and remembers
// addresses, so the same MAC gets the same address back and no address
// is given twice. pxe/leases keeps it in the store.
type Leases interface {
	// Pool is the range of addresses for clients with no static one.
	Pool() Pool
	// Offer picks the address to offer a client.
	Offer(ctx context.Context, r OfferRequest) (Lease, error)
	// Ack binds an address to a client, or returns ErrUnavailable.
	Ack(ctx context.Context, r AckRequest) (Lease, error)
	// Withdraw forgets the offer made to a MAC that chose another server.
	Withdraw(mac net.HardwareAddr)
	// Release gives back a client's address (DHCPRELEASE).
	Release(ctx context.Context, mac net.HardwareAddr, ip netip.Addr) error
	// Decline marks an address a client found in use (DHCPDECLINE).
	Decline(ctx context.Context, mac net.HardwareAddr, ip netip.Addr) error
}

// LeaseState is the life-cycle state of a lease row.
type LeaseState string

const (
	// StateOffered: offered to a client that has not requested it yet.
	// Offers of pool addresses are held in memory for a while (pxe/leases'
	// Config.OfferHold), not written: a DORA costs one write, and
	// an offer lost in a crash costs at most a NAK (the ACK is what the
	// unique address key guards).
	StateOffered LeaseState = "offered"
	// StateBound: acknowledged; held until Expires.
	StateBound LeaseState = "bound"
	// StateReleased: given back by the client; the MAC keeps a claim on it
	// (it gets the address back) until the pool needs it for another.
	StateReleased LeaseState = "released"
	// StateDeclined: the client saw the address in use (DHCPDECLINE); it is
	// not handed out until Expires.
	StateDeclined LeaseState = "declined"
	// StateStatic: a static or pinned address; never expires, never
	// reclaimed by the pool.
	StateStatic LeaseState = "static"
)

// Lease is one row of the lease database.
type Lease struct {
	IP       netip.Addr
	MAC      net.HardwareAddr // nil for declined addresses
	Hostname string
	State    LeaseState
	Expires  time.Time // zero for StateStatic
}

// Pool is an inclusive range of IPv4 addresses handed out to clients that
// have no static address.
type Pool struct {
	Start, End netip.Addr
}

// Contains reports whether ip lies in the pool.
func (p Pool) Contains(ip netip.Addr) bool {
	return ip.Is4() && p.Start.Is4() && p.End.Is4() && p.Start.Compare(ip) <= 0 && ip.Compare(p.End) <= 0
}

// Size is the number of addresses in the pool.
func (p Pool) Size() int {
	if !p.Start.Is4() || !p.End.Is4() || p.End.Less(p.Start) {
		return 0
	}
	return int(u32(p.End)-u32(p.Start)) + 1
}

// PoolFor returns the default pool of a subnet: the upper half of its
// host addresses (the lower half is left for static hosts and the
// frontend), e.g. 10.1.0.128-10.1.0.254 for 10.1.0.0/24.
func PoolFor(subnet netip.Prefix) (Pool, error) {
	subnet = subnet.Masked()
	if !subnet.Addr().Is4() || subnet.Bits() > 30 {
		return Pool{}, fmt.Errorf("pool for %s: need an IPv4 subnet of at least 4 addresses", subnet)
	}
	base := u32(subnet.Addr())
	size := uint32(1) << (32 - subnet.Bits())
	return Pool{Start: a4(base + size/2), End: a4(base + size - 2)}, nil
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func a4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ErrUnavailable means the address cannot be given to this client: it is
// held by another, outside the pool, or declined. The server answers NAK.
var ErrUnavailable = errors.New("address not available")

// ErrPoolExhausted means no pool address is free.
var ErrPoolExhausted = errors.New("address pool exhausted")

// Live reports whether the lease still holds its address at now.
func (l Lease) Live(now time.Time) bool {
	return l.State == StateStatic || l.Expires.After(now)
}

// Nth is the pool's address i (0 is Start); i must be below Size.
func (p Pool) Nth(i int) netip.Addr { return a4(u32(p.Start) + uint32(i)) }

// OfferRequest asks for an address to offer a client.
type OfferRequest struct {
	MAC      net.HardwareAddr
	Hostname string
	// Static, when set, is the client's static address (Binding.IP).
	Static netip.Addr
	// Requested is the address the client asked for (option 50), a hint.
	Requested netip.Addr
}

// AckRequest confirms an address for a client (DHCPREQUEST).
type AckRequest struct {
	MAC      net.HardwareAddr
	IP       netip.Addr
	Hostname string
	// Static marks IP as the client's static address (Binding.IP).
	Static bool
	// LeaseTime is how long the address is held (ignored when Static).
	LeaseTime time.Duration
}
