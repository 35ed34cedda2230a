package controller

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"ironbark/controller/ec2"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
)

// Quota kinds, as `ironbark quota set` and `quota list` name them
// (Eucalyptus' per-account quotas).
const (
	QuotaInstances      = "instances"       // instances not terminated
	QuotaCores          = "cores"           // their cores
	QuotaMemory         = "memory-mib"      // their memory, MiB
	QuotaAddresses      = "addresses"       // public addresses held
	QuotaImages         = "images"          // images registered
	QuotaKeyPairs       = "key-pairs"       // key pairs
	QuotaSecurityGroups = "security-groups" // security groups besides "default"
)

// quotaKind is one kind of quota: its column in account_quotas, how to
// count what an account holds (empty: from instanceUsage), and the EC2
// error code for going over.
type quotaKind struct {
	name, column, count, code string
}

// quotaKinds lists the kinds in display order.
func quotaKinds() []quotaKind {
	return []quotaKind{
		{QuotaInstances, "instances", "", "InstanceLimitExceeded"},
		{QuotaCores, "cores", "", "VcpuLimitExceeded"},
		{QuotaMemory, "memory_mib", "", "ResourceLimitExceeded"},
		{QuotaAddresses, "addresses", `SELECT COUNT(*) FROM addresses WHERE account_id = ?`, "AddressLimitExceeded"},
		{QuotaImages, "images", `SELECT COUNT(*) FROM images WHERE account_id = ?`, "ResourceLimitExceeded"},
		{QuotaKeyPairs, "key_pairs", `SELECT COUNT(*) FROM key_pairs WHERE account_id = ?`, "ResourceLimitExceeded"},
		{QuotaSecurityGroups, "security_groups", `SELECT COUNT(*) FROM security_groups WHERE account_id = ? AND name <> '` + DefaultGroup + `'`, "SecurityGroupLimitExceeded"},
	}
}

// instanceUsage counts an account's live instances, their cores and
// memory, in one read of the instances_quota index.
func instanceUsage(ctx context.Context, q store.Querier, accountID string) (map[string]int64, error) {
	var n, cores, mem int64
	err := q.QueryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(cores), 0), COALESCE(SUM(memory_mib), 0)
		FROM instances WHERE account_id = ? AND state <> 'terminated'`, accountID).Scan(&n, &cores, &mem)
	if err != nil {
		return nil, fmt.Errorf("count instances: %w", err)
	}
	return map[string]int64{QuotaInstances: n, QuotaCores: cores, QuotaMemory: mem}, nil
}

func findQuotaKind(name string) (quotaKind, bool) {
	for _, k := range quotaKinds() {
		if k.name == name {
			return k, true
		}
	}
	return quotaKind{}, false
}

// QuotaKinds names the kinds of quota, in display order.
func QuotaKinds() []string {
	var names []string
	for _, k := range quotaKinds() {
		names = append(names, k.name)
	}
	return names
}

// quotaMigration adds the quota table, and the cores and memory each
// instance was launched with (so a VM type edited later does not change
// what an account holds). Existing instances take the default VM types'
// sizes.
func quotaMigration() store.Migration {
	var cores, mem strings.Builder
	for _, vt := range DefaultVMTypes() {
		fmt.Fprintf(&cores, " WHEN '%s' THEN %d", vt.Name, vt.Cores)
		fmt.Fprintf(&mem, " WHEN '%s' THEN %d", vt.Name, vt.MemoryMiB)
	}
	return store.Migration{ID: "controller/0013-quotas", SQL: `
CREATE TABLE account_quotas (
	account_id      TEXT PRIMARY KEY REFERENCES accounts(id),
	instances       BIGINT,
	cores           BIGINT,
	memory_mib      BIGINT,
	addresses       BIGINT,
	images          BIGINT,
	key_pairs       BIGINT,
	security_groups BIGINT
);
ALTER TABLE instances ADD COLUMN cores BIGINT NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN memory_mib BIGINT NOT NULL DEFAULT 0;
UPDATE instances SET cores = CASE vm_type` + cores.String() + ` ELSE 0 END,
	memory_mib = CASE vm_type` + mem.String() + ` ELSE 0 END;
`}
}

// quotaIndexMigration lets a launch count the account's live instances,
// cores and memory from the index alone, however many terminated ones
// it has left behind.
func quotaIndexMigration() store.Migration {
	return store.Migration{ID: "controller/0015-quota-index", SQL: `
CREATE INDEX instances_quota ON instances(account_id, cores, memory_mib) WHERE state <> 'terminated';
`}
}

// Quota is an account's limits and what it holds. A kind missing from
// Limits is unlimited.
type Quota struct {
	Account string
	Limits  map[string]int64
	Used    map[string]int64
}

// ErrUnknownQuota is returned by SetQuota for a kind it does not know.
var ErrUnknownQuota = errors.New("unknown quota")

// SetQuota changes an account's limits: a kind mapped to nil becomes
// unlimited, a kind not in the map keeps its limit. A limit below what
// the account holds is allowed: it refuses new resources until the
// account is back under it.
func SetQuota(ctx context.Context, db *store.DB, account string, limits map[string]*int64) error {
	var accountID string
	err := db.QueryRow(ctx, `SELECT id FROM accounts WHERE name = ?`, account).Scan(&accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("set quota: account %q: %w", account, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("set quota for %s: %w", account, err)
	}
	var sets []string
	var args []any
	for name, v := range limits {
		k, ok := findQuotaKind(name)
		if !ok {
			return fmt.Errorf("set quota %q: %w (kinds: %s)", name, ErrUnknownQuota, strings.Join(QuotaKinds(), ", "))
		}
		if v != nil && *v < 0 {
			return fmt.Errorf("set quota %s: %d is negative", name, *v)
		}
		sets = append(sets, k.column+" = ?")
		if v == nil {
			args = append(args, nil)
		} else {
			args = append(args, *v)
		}
	}
	if len(sets) == 0 {
		return nil
	}
	err = db.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO account_quotas (account_id) VALUES (?) ON CONFLICT (account_id) DO NOTHING`, accountID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE account_quotas SET `+strings.Join(sets, ", ")+` WHERE account_id = ?`, append(args, accountID)...)
		return err
	})
	if err != nil {
		return fmt.Errorf("set quota for %s: %w", account, err)
	}
	return nil
}

// ListQuotas reads the limits and usage of one account, or of every
// account (by name) when account is "".
func ListQuotas(ctx context.Context, db *store.DB, account string) ([]Quota, error) {
	query, args := `SELECT id, name FROM accounts ORDER BY name`, []any{}
	if account != "" {
		query, args = `SELECT id, name FROM accounts WHERE name = ?`, []any{account}
	}
	type acct struct{ id, name string }
	var accts []acct
	rows, err := db.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list quotas: %w", err)
	}
	for rows.Next() {
		var a acct
		if err := rows.Scan(&a.id, &a.name); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list quotas: %w", err)
		}
		accts = append(accts, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list quotas: %w", err)
	}
	if account != "" && len(accts) == 0 {
		return nil, fmt.Errorf("quota: account %q: %w", account, store.ErrNotFound)
	}
	var out []Quota
	for _, a := range accts {
		q := Quota{Account: a.name, Used: map[string]int64{}}
		if q.Limits, err = quotaLimits(ctx, db, a.id, false); err != nil {
			return nil, fmt.Errorf("quota for %s: %w", a.name, err)
		}
		for _, k := range quotaKinds() {
			if q.Used[k.name], err = quotaUsed(ctx, db, a.id, k); err != nil {
				return nil, fmt.Errorf("quota for %s: %w", a.name, err)
			}
		}
		out = append(out, q)
	}
	return out, nil
}

// quotaLimits reads an account's limits; lock holds its quota row until
// the transaction ends (SQLite's write transactions already hold the
// database), so two creations for one account count one after the other.
func quotaLimits(ctx context.Context, q store.Querier, accountID string, lock bool) (map[string]int64, error) {
	kinds := quotaKinds()
	cols := make([]string, len(kinds))
	for i, k := range kinds {
		cols[i] = k.column
	}
	query := `SELECT ` + strings.Join(cols, ", ") + ` FROM account_quotas WHERE account_id = ?`
	if lock && q.Engine() == store.Postgres {
		query += ` FOR UPDATE`
	}
	vals := make([]sql.NullInt64, len(kinds))
	ptrs := make([]any, len(kinds))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	err := q.QueryRow(ctx, query, accountID).Scan(ptrs...)
	if errors.Is(err, sql.ErrNoRows) {
		return map[string]int64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read quota: %w", err)
	}
	limits := map[string]int64{}
	for i, k := range kinds {
		if vals[i].Valid {
			limits[k.name] = vals[i].Int64
		}
	}
	return limits, nil
}

func quotaUsed(ctx context.Context, q store.Querier, accountID string, k quotaKind) (int64, error) {
	if k.count == "" {
		use, err := instanceUsage(ctx, q, accountID)
		return use[k.name], err
	}
	var n int64
	if err := q.QueryRow(ctx, k.count, accountID).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", k.name, err)
	}
	return n, nil
}

func quotaError(k quotaKind, limit, used, want int64) error {
	return ec2.Errorf(k.code, "Your quota allows %d %s; the account holds %d and the request needs %d more.", limit, k.name, used, want)
}

// checkQuota refuses to add n resources of one kind to an account beyond
// its limit. Call it in the transaction that creates them.
func checkQuota(ctx context.Context, tx *store.Tx, accountID, kind string, n int64) error {
	limits, err := quotaLimits(ctx, tx, accountID, true)
	if err != nil {
		return err
	}
	limit, ok := limits[kind]
	if !ok {
		return nil
	}
	k, _ := findQuotaKind(kind)
	used, err := quotaUsed(ctx, tx, accountID, k)
	if err != nil {
		return err
	}
	if used+n > limit {
		return quotaError(k, limit, used, n)
	}
	return nil
}

// launchAllowance is how many instances of vt, up to hi, the account's
// quotas let it launch (each launched instance with a public address when
// withAddress); fewer than lo is the error of the first quota that
// binds. Call it in the transaction that inserts the instances.
func launchAllowance(ctx context.Context, tx *store.Tx, accountID string, vt nodeapi.VMType, lo, hi int, withAddress bool) (int, error) {
	limits, err := quotaLimits(ctx, tx, accountID, true)
	if err != nil || len(limits) == 0 {
		return hi, err
	}
	per := map[string]int64{QuotaInstances: 1, QuotaCores: int64(vt.Cores), QuotaMemory: int64(vt.MemoryMiB)}
	if withAddress {
		per[QuotaAddresses] = 1
	}
	allowed := int64(hi)
	var inst map[string]int64
	for _, k := range quotaKinds() {
		limit, ok := limits[k.name]
		if !ok || per[k.name] == 0 {
			continue
		}
		var used int64
		if k.count == "" {
			if inst == nil {
				if inst, err = instanceUsage(ctx, tx, accountID); err != nil {
					return 0, err
				}
			}
			used = inst[k.name]
		} else if used, err = quotaUsed(ctx, tx, accountID, k); err != nil {
			return 0, err
		}
		fit := (limit - used) / per[k.name]
		if limit < used {
			fit = 0
		}
		if fit < int64(lo) {
			return 0, quotaError(k, limit, used, per[k.name]*int64(lo))
		}
		allowed = min(allowed, fit)
	}
	return int(allowed), nil
}

// maxInstances is DescribeAccountAttributes' max-instances: the
// account's instance quota, else what one RunInstances may ask for.
func maxInstances(ctx context.Context, q store.Querier, accountID string) (string, error) {
	limits, err := quotaLimits(ctx, q, accountID, false)
	if err != nil {
		return "", err
	}
	if n, ok := limits[QuotaInstances]; ok {
		return strconv.FormatInt(n, 10), nil
	}
	return strconv.Itoa(maxRunCount), nil
}
