package frontend

import (
	"fmt"
	"net/netip"

	"ironbark/pxe/dhcp"
)

// MinDataSize is the smallest data partition (/var/lib/ironbark) the
// installer makes: the store, the PKI and the first images.
const MinDataSize = 128 << 20

// Need is what the install needs of the machine beyond the answers.
type Need struct {
	ImageSize int64    // bytes the appliance image takes at the start of the disk
	Rolls     []string // the rolls the medium carries; nil: not checked
}

// Validate checks the answers against each other and the machine. Every
// problem is returned at once; nothing is written.
func Validate(a *Answers, m Machine, need Need) error {
	var errs Errors
	bad := func(path, format string, args ...any) {
		errs = append(errs, Error{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	badField := map[string]bool{}
	for _, f := range Fields() {
		v := f.Get(a)
		if v == "" || (f.Kind == KindInt && v == "0") {
			badField[f.Path] = true
			if f.Required(a) {
				bad(f.Path, "missing")
			}
			continue
		}
		// Re-check each value as typed (answers built in code or by the
		// screens reach here without Parse).
		b := *a
		if err := f.Set(&b, v); err != nil {
			badField[f.Path] = true
			bad(f.Path, "%v", err)
		}
	}
	// The checks across fields run on the fields that are good, so the
	// screens get them before every later answer is given.
	ok := func(paths ...string) bool {
		for _, p := range paths {
			if badField[p] {
				return false
			}
		}
		return true
	}

	// Interfaces.
	nics, err := m.NICs()
	if err != nil {
		return err
	}
	have := map[string]NIC{}
	var names []string
	for _, n := range nics {
		have[n.Name] = n
		names = append(names, n.Name)
	}
	for _, p := range []struct{ path, name string }{{"public.interface", a.Public.Interface}, {"private.interface", a.Private.Interface}} {
		if _, found := have[p.name]; !found && ok(p.path) {
			bad(p.path, "no interface %q on this machine (it has: %s)", p.name, orNone(names))
		}
	}
	if a.Public.Interface == a.Private.Interface && ok("private.interface") {
		bad("private.interface", "the private network needs its own interface, not the public one (%s)", a.Public.Interface)
	}

	// Subnets.
	var priv netip.Prefix
	if ok("private.address", "private.netmask") {
		priv, _ = prefix(a.Private.Address, a.Private.Netmask)
		checkHostAddr(priv, "private.address", bad)
		pool, err := dhcp.PoolFor(priv)
		if err != nil {
			bad("private.netmask", "%v", err)
		} else {
			room := int(poolSize(pool.Start, pool.End))
			if a.Private.Nodes > room {
				bad("private.netmask", "%s has room for %d nodes (the upper half of the subnet, %s-%s), the rack needs %d: use a larger subnet (e.g. /%d)",
					priv.Masked(), room, pool.Start, pool.End, a.Private.Nodes, bitsFor(a.Private.Nodes))
			}
			if poolContains(pool.Start, pool.End, priv.Addr()) {
				bad("private.address", "%s lies in the nodes' address range %s-%s: use an address in the lower half, such as %s",
					priv.Addr(), pool.Start, pool.End, priv.Masked().Addr().Next())
			}
		}
	}
	if !a.Public.DHCP && ok("public.address", "public.netmask") {
		pub, _ := prefix(a.Public.Address, a.Public.Netmask)
		checkHostAddr(pub, "public.address", bad)
		if priv.IsValid() && pub.Masked().Overlaps(priv.Masked()) {
			bad("private.address", "the private subnet %s overlaps the public subnet %s", priv.Masked(), pub.Masked())
		}
		if a.Public.Gateway != "" && ok("public.gateway") {
			if gw, err := netip.ParseAddr(a.Public.Gateway); err == nil && !pub.Masked().Contains(gw) {
				bad("public.gateway", "%s is not in the public subnet %s", gw, pub.Masked())
			}
		}
	}

	// Disk.
	if !ok("disk.device") {
		// reported above
	} else if d, err := FindDisk(m, a.Disk.Device); err != nil {
		bad("disk.device", "%v", err)
	} else if need.ImageSize > 0 && ok("disk.dataSize") {
		data := int64(MinDataSize)
		if a.Disk.DataSize != "" && a.Disk.DataSize != "rest" {
			data, _ = ParseSize(a.Disk.DataSize)
		}
		want := alignUp(need.ImageSize) + data + 1<<20
		if d.Size < want {
			bad("disk.device", "%s holds %s; the frontend needs %s (appliance %s + data %s)",
				d.Path, human(d.Size), human(want), human(need.ImageSize), human(data))
		}
	}

	// Rolls.
	if need.Rolls != nil && ok("rolls") {
		avail := map[string]bool{}
		for _, r := range need.Rolls {
			avail[r] = true
		}
		for _, r := range a.Rolls {
			if !avail[r] {
				bad("rolls", "no roll %q on this medium (it has: %s)", r, orNone(need.Rolls))
			}
		}
	}
	return errs.Err()
}

func checkHostAddr(p netip.Prefix, path string, bad func(string, string, ...any)) {
	m := p.Masked()
	last := m.Addr()
	for i := 0; i < (1<<(32-p.Bits()))-1; i++ {
		last = last.Next()
	}
	if p.Addr() == m.Addr() || p.Addr() == last {
		bad(path, "%s is the network or broadcast address of %s", p.Addr(), m)
	}
}

func poolSize(start, end netip.Addr) uint32 {
	a, b := start.As4(), end.As4()
	s := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	e := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	return e - s + 1
}

func poolContains(start, end, a netip.Addr) bool {
	return a.Compare(start) >= 0 && a.Compare(end) <= 0
}

// bitsFor is the longest prefix whose node range holds n nodes.
func bitsFor(n int) int {
	for bits := 30; bits >= 8; bits-- {
		if (1<<(32-bits))/2-1 >= n {
			return bits
		}
	}
	return 8
}

func alignUp(n int64) int64 { return (n + 1<<20 - 1) &^ (1<<20 - 1) }

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	default:
		return fmt.Sprintf("%d MiB", n>>20)
	}
}
