package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"ironbark/internal/store"
)

// The public address pool is what AllocateAddress hands out: the blocks
// in the store (`ironbark address pool add CIDR`, seen at once by a
// running controller) plus those of publicAddresses in controller.json
// (Config.PublicAddresses).

// AddressBlock is one block of the public address pool.
type AddressBlock struct {
	Block     string `json:"block"`     // a CIDR or a range a.b.c.d-a.b.c.e, as given
	Addresses int    `json:"addresses"` // how many it holds
	Allocated int    `json:"allocated"` // how many of those accounts hold
}

// ErrAddressBlockExists and ErrNoAddressBlock are returned by
// AddAddressBlock and RemoveAddressBlock.
var (
	ErrAddressBlockExists = errors.New("the pool already holds this block")
	ErrNoAddressBlock     = errors.New("the pool holds no such block (blocks from controller.json's publicAddresses are changed there)")
)

// AddAddressBlock adds a CIDR ("198.51.100.0/28": the network and
// broadcast addresses are left out) or a range to the pool.
func AddAddressBlock(ctx context.Context, db *store.DB, block string) error {
	block = strings.TrimSpace(block)
	if _, err := parseAddressPool([]string{block}); err != nil {
		return err
	}
	_, err := db.Exec(ctx, `INSERT INTO public_address_pool (block, created_at) VALUES (?, ?)`, block, time.Now().Unix())
	if store.IsUniqueViolation(err) {
		return fmt.Errorf("address pool add %s: %w", block, ErrAddressBlockExists)
	}
	if err != nil {
		return fmt.Errorf("address pool add %s: %w", block, err)
	}
	return nil
}

// RemoveAddressBlock takes a block out of the pool. It refuses while an
// account holds an address of the block: releasing it first loses nothing.
func RemoveAddressBlock(ctx context.Context, db *store.DB, block string) error {
	block = strings.TrimSpace(block)
	return db.InTx(ctx, func(tx *store.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM public_address_pool WHERE block = ?`, block).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("address pool remove %s: %w", block, ErrNoAddressBlock)
		}
		p, err := parseAddressPool([]string{block})
		if err != nil {
			return err
		}
		held, err := allocatedAddresses(ctx, tx)
		if err != nil {
			return err
		}
		var inUse []string
		for _, ip := range held {
			if p.contains(ip) {
				inUse = append(inUse, ip)
			}
		}
		slices.SortFunc(inUse, func(a, b string) int {
			return netip.MustParseAddr(a).Compare(netip.MustParseAddr(b))
		})
		if len(inUse) > 0 {
			return fmt.Errorf("address pool remove %s: accounts hold %s; they release them first (ReleaseAddress)", block, strings.Join(inUse, ", "))
		}
		_, err = tx.Exec(ctx, `DELETE FROM public_address_pool WHERE block = ?`, block)
		return err
	})
}

// ListAddressBlocks lists the store's blocks and those of settings
// (publicAddresses in controller.json), with their use.
func ListAddressBlocks(ctx context.Context, db *store.DB, settings []string) ([]AddressBlock, error) {
	blocks, err := storedAddressBlocks(ctx, db)
	if err != nil {
		return nil, err
	}
	held, err := allocatedAddresses(ctx, db)
	if err != nil {
		return nil, err
	}
	var out []AddressBlock
	for _, b := range append(slices.Clone(settings), blocks...) {
		p, err := parseAddressPool([]string{b})
		if err != nil {
			return nil, err
		}
		ab := AddressBlock{Block: b, Addresses: p.size()}
		for _, ip := range held {
			if p.contains(ip) {
				ab.Allocated++
			}
		}
		out = append(out, ab)
	}
	return out, nil
}

func storedAddressBlocks(ctx context.Context, q store.Querier) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT block FROM public_address_pool ORDER BY created_at, block`)
	if err != nil {
		return nil, fmt.Errorf("address pool: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

func allocatedAddresses(ctx context.Context, q store.Querier) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT public_ip FROM addresses`)
	if err != nil {
		return nil, fmt.Errorf("allocated addresses: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var ip string
		if err := rows.Scan(&ip); err != nil {
			return nil, err
		}
		out = append(out, ip)
	}
	return out, rows.Err()
}

// publicPool is the whole pool now: the config's blocks and the store's.
func (c *Cloud) publicPool(ctx context.Context, q store.Querier) (*addressPool, error) {
	blocks, err := storedAddressBlocks(ctx, q)
	if err != nil {
		return nil, err
	}
	p, err := parseAddressPool(blocks)
	if err != nil {
		return nil, fmt.Errorf("address pool in the store: %w", err)
	}
	p.ranges = append(slices.Clone(c.pool.ranges), p.ranges...)
	return p, nil
}

// contains reports whether ip is in the pool.
func (p *addressPool) contains(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	for _, r := range p.ranges {
		if !a.Less(r[0]) && !r[1].Less(a) {
			return true
		}
	}
	return false
}
