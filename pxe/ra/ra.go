package ra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// Config configures an Advertiser.
type Config struct {
	// Interface is where advertisements are sent and solicitations heard.
	Interface string
	// Interval between unsolicited advertisements (default 10s).
	Interval time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Advertiser sends router advertisements on one interface.
type Advertiser struct {
	cfg Config
	log *slog.Logger
}

// New returns an advertiser; nothing is sent until Run.
func New(cfg Config) (*Advertiser, error) {
	if cfg.Interface == "" {
		return nil, errors.New("ra: no interface")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Advertiser{cfg: cfg, log: cfg.Logger.With("iface", cfg.Interface)}, nil
}

// Message is the advertisement sent on ifi: hop limit 64, router lifetime
// 0, no prefixes, M and O clear, and the interface's link-layer address.
func Message(ifi *net.Interface) *ndp.RouterAdvertisement {
	ra := &ndp.RouterAdvertisement{CurrentHopLimit: 64, RouterLifetime: 0}
	if len(ifi.HardwareAddr) > 0 {
		ra.Options = append(ra.Options, &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr})
	}
	return ra
}

var (
	allNodes   = netip.MustParseAddr("ff02::1")
	allRouters = netip.MustParseAddr("ff02::2")
)

// Listen opens the ICMPv6 socket on the interface's link-local address
// and joins all-routers, to hear solicitations. It fails while the
// interface has no usable link-local address (no carrier yet, or DAD
// still running).
func Listen(ifname string) (*ndp.Conn, *net.Interface, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, nil, fmt.Errorf("ra: %w", err)
	}
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return nil, nil, fmt.Errorf("ra listen on %s: %w", ifname, err)
	}
	if err := c.JoinGroup(allRouters); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("ra join ff02::2 on %s: %w", ifname, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	if err := c.SetICMPFilter(&f); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("ra icmp filter on %s: %w", ifname, err)
	}
	return c, ifi, nil
}

// Run waits until the interface has a link-local address (a bridge has
// none until a port has carrier), then advertises until ctx ends.
func (a *Advertiser) Run(ctx context.Context) error {
	logged := false
	for {
		c, ifi, err := Listen(a.cfg.Interface)
		if err == nil {
			return a.Serve(ctx, c, ifi)
		}
		if !logged {
			a.log.Info("ra waiting for a link-local address", "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// Serve advertises on c (from Listen) every Interval and in answer to
// each solicitation, until ctx ends; it closes c.
func (a *Advertiser) Serve(ctx context.Context, c *ndp.Conn, ifi *net.Interface) error {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	msg := Message(ifi)
	send := func(dst netip.Addr, why string) {
		if err := c.WriteTo(msg, nil, dst); err != nil && ctx.Err() == nil {
			a.log.Warn("ra send", "dst", dst, "err", err)
			return
		}
		a.log.Debug("ra sent", "dst", dst, "why", why)
	}
	a.log.Info("ra advertising (router lifetime 0)", "interval", a.cfg.Interval)
	go func() {
		t := time.NewTicker(a.cfg.Interval)
		defer t.Stop()
		for {
			send(allNodes, "periodic")
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	for {
		m, _, from, err := c.ReadFrom()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ra read on %s: %w", a.cfg.Interface, err)
		}
		if _, ok := m.(*ndp.RouterSolicitation); !ok {
			continue
		}
		// RFC 4861 6.2.6: answer a solicitation from the unspecified
		// address by multicast; otherwise unicast is allowed.
		dst := allNodes
		if from.IsLinkLocalUnicast() {
			dst = from
		}
		send(dst, "solicited")
	}
}
