package natmap

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// syncAddrs makes the public interface carry exactly the mappings' public
// addresses among the ones labelled ours, announcing each new one.
func (t *Table) syncAddrs(ms []Mapping) error {
	if t.nl == nil {
		return nil
	}
	link, err := t.nl.LinkByName(t.cfg.PublicInterface)
	if err != nil {
		return fmt.Errorf("natmap: public interface %s: %w", t.cfg.PublicInterface, err)
	}
	label := t.cfg.PublicInterface + labelSuffix
	have, err := t.nl.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("natmap: addresses of %s: %w", t.cfg.PublicInterface, err)
	}
	want := map[netip.Addr]bool{}
	for _, m := range ms {
		want[m.Public] = true
	}
	var errs []error
	for _, a := range have {
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		if a.Label != label {
			continue
		}
		if want[ip] {
			delete(want, ip)
			continue
		}
		if err := t.nl.AddrDel(link, &a); err != nil {
			errs = append(errs, fmt.Errorf("natmap: remove %s from %s: %w", ip, t.cfg.PublicInterface, err))
		}
	}
	for _, m := range ms {
		if !want[m.Public] {
			continue
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: m.Public.AsSlice(), Mask: net.CIDRMask(32, 32)}, Label: label}
		if err := t.nl.AddrAdd(link, a); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("natmap: add %s to %s: %w", m.Public, t.cfg.PublicInterface, err))
			continue
		}
		if err := t.announce(link, m.Public); err != nil {
			t.cfg.Logger.Warn("gratuitous ARP", "address", m.Public, "interface", t.cfg.PublicInterface, "err", err)
		}
	}
	return errors.Join(errs...)
}

// announce sends a gratuitous ARP request for ip from the interface, so
// the neighbours' caches point at this node at once when an address moved
// here from another.
func (t *Table) announce(link netlink.Link, ip netip.Addr) error {
	mac := link.Attrs().HardwareAddr
	if len(mac) != 6 {
		return nil // not Ethernet: nothing to announce
	}
	frame := garp(mac, ip)
	send := func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: link.Attrs().Index, Halen: 6}
		copy(sa.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		return unix.Sendto(fd, frame, 0, sa)
	}
	return inNetNS(t.cfg.NetNS, send)
}

// garp is an Ethernet frame with a gratuitous ARP request: who-has ip,
// tell ip, from mac.
func garp(mac net.HardwareAddr, ip netip.Addr) []byte {
	b := make([]byte, 0, 42)
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	b = append(b, mac...)
	b = append(b, 0x08, 0x06)                // ARP
	b = append(b, 0, 1, 0x08, 0, 6, 4, 0, 1) // Ethernet, IPv4, request
	b = append(b, mac...)
	b = append(b, ip.AsSlice()...)
	b = append(b, 0, 0, 0, 0, 0, 0)
	b = append(b, ip.AsSlice()...)
	return b
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
