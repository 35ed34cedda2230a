package leases

import (
	"net/netip"

	"ironbark/pxe/dhcp"
)

// index is the in-memory copy of the lease rows that offers are decided
// from: by address, and the address of each MAC (a MAC holds at most one
// row, as in the table).
type index struct {
	rows map[netip.Addr]dhcp.Lease
	macs map[string]netip.Addr
}

func newIndex() index {
	return index{rows: map[netip.Addr]dhcp.Lease{}, macs: map[string]netip.Addr{}}
}

func (k index) byMAC(mac string) (dhcp.Lease, bool) {
	ip, ok := k.macs[mac]
	if !ok {
		return dhcp.Lease{}, false
	}
	l, ok := k.rows[ip]
	return l, ok
}

// put stores l as the row on its address and as its MAC's only row.
func (k index) put(l dhcp.Lease) {
	k.del(l.IP)
	if l.MAC != nil {
		m := l.MAC.String()
		if prev, ok := k.macs[m]; ok {
			delete(k.rows, prev)
		}
		k.macs[m] = l.IP
	}
	k.rows[l.IP] = l
}

// del removes the row on ip.
func (k index) del(ip netip.Addr) {
	old, ok := k.rows[ip]
	if !ok {
		return
	}
	delete(k.rows, ip)
	if old.MAC != nil && k.macs[old.MAC.String()] == ip {
		delete(k.macs, old.MAC.String())
	}
}

// delMAC removes the row of mac.
func (k index) delMAC(mac string) {
	if ip, ok := k.macs[mac]; ok {
		k.del(ip)
	}
}

// effect is one change to the index, applied once the transaction that
// made or read it has committed: put a row, or delete the row on del, or
// (delMAC) the row of a MAC. bound marks the row an ACK bound (its
// offer is then done with).
type effect struct {
	put    dhcp.Lease
	del    netip.Addr
	delMAC string
	bound  bool
}

// observe records what a transaction read: the row on ip and the row of
// mac as the database has them now (another server or the CLI may have
// changed them since the index last saw them).
func observe(fx []effect, mac string, ip netip.Addr, cur dhcp.Lease, have bool, holder dhcp.Lease, held bool) []effect {
	if held {
		fx = append(fx, effect{put: holder})
	} else {
		fx = append(fx, effect{del: ip})
	}
	if have {
		fx = append(fx, effect{put: cur})
	} else {
		fx = append(fx, effect{delMAC: mac})
	}
	return fx
}

// apply brings the index up to date with fx when ok (the transaction
// committed, or failed only by refusing).
func (s *Store) apply(fx []effect, ok bool) {
	if !ok || len(fx) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range fx {
		switch {
		case e.put.IP.IsValid():
			s.known.put(e.put)
			if e.bound {
				delete(s.offers, e.put.IP)
			}
		case e.del.IsValid():
			s.known.del(e.del)
		case e.delMAC != "":
			s.known.delMAC(e.delMAC)
		}
	}
}
