package controller

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"ironbark/controller/ec2"
	"ironbark/internal/datadir"
	"ironbark/internal/store"
)

// MaxAccessKeys is how many access keys an account may hold, active or
// not: two, as AWS allows a user, so a key can be rotated (make the
// second, move the clients over, deactivate and delete the first).
const MaxAccessKeys = 2

// KeyUseInterval is how often at most a key's last-used time is written:
// a busy key costs one write a minute, not one per call.
const KeyUseInterval = time.Minute

// Errors of the access-key and account commands.
var (
	// ErrTooManyKeys: the account (or the user) already holds
	// MaxAccessKeys keys.
	ErrTooManyKeys = fmt.Errorf("an account, and each of its users, holds at most %d access keys: deactivate and delete one first", MaxAccessKeys)
	// ErrAdminDisable: the administrator's account cannot be disabled
	// (nobody could then enable it over the API, and the cloud's own
	// tools use it).
	ErrAdminDisable = errors.New("the administrator's account cannot be disabled")
)

// AccessKey is one of an account's keys as listed; the secret is never
// listed, only shown once when the key is made.
type AccessKey struct {
	AccessKey string
	User      string // "" for the account's own keys
	Active    bool
	Created   time.Time
	LastUsed  time.Time // zero: never used
}

// accountRef finds an account's id and whether it is the administrator's.
func accountRef(ctx context.Context, q store.Querier, name string) (id string, admin bool, err error) {
	var a int
	err = q.QueryRow(ctx, `SELECT id, admin FROM accounts WHERE name = ?`, name).Scan(&id, &a)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, fmt.Errorf("account %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return "", false, fmt.Errorf("account %q: %w", name, err)
	}
	return id, a == 1, nil
}

// CreateAccessKey makes a new active key for the account, or for one of
// its users when user is not "", and returns the account with that key
// (and its secret) in AccessKey and SecretKey. The account itself and
// each user hold at most MaxAccessKeys.
func CreateAccessKey(ctx context.Context, db *store.DB, account, user string) (Account, error) {
	a := Account{Name: account, User: user, AccessKey: newAccessKey(), SecretKey: newSecretKey()}
	sealed, err := db.Seal(a.SecretKey, a.AccessKey)
	if err != nil {
		return Account{}, fmt.Errorf("create access key for %q: %w", account, err)
	}
	err = db.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if a.ID, a.Admin, err = accountRef(ctx, tx, account); err != nil {
			return err
		}
		if user != "" {
			if err := userRef(ctx, tx, a.ID, account, user); err != nil {
				return err
			}
		}
		// Lock the account's row so that two creates at once count each
		// other's key (PostgreSQL; SQLite serialises writers anyway).
		if _, err := tx.Exec(ctx, `UPDATE accounts SET id = id WHERE id = ?`, a.ID); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM access_keys WHERE account_id = ? AND user_name = ?`, a.ID, user).Scan(&n); err != nil {
			return err
		}
		if n >= MaxAccessKeys {
			return ErrTooManyKeys
		}
		_, err = tx.Exec(ctx, `INSERT INTO access_keys (access_key, secret, account_id, user_name, created_at) VALUES (?, ?, ?, ?, ?)`,
			a.AccessKey, sealed, a.ID, user, time.Now().Unix())
		return err
	})
	if err != nil {
		return Account{}, fmt.Errorf("create access key for %q: %w", account, err)
	}
	return a, nil
}

// AccessKeys lists an account's keys, oldest first.
func AccessKeys(ctx context.Context, db *store.DB, account string) ([]AccessKey, error) {
	id, _, err := accountRef(ctx, db, account)
	if err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `SELECT access_key, user_name, active, created_at, last_used FROM access_keys
		WHERE account_id = ? ORDER BY created_at, access_key`, id)
	if err != nil {
		return nil, fmt.Errorf("list access keys of %q: %w", account, err)
	}
	defer rows.Close()
	var out []AccessKey
	for rows.Next() {
		var k AccessKey
		var active int
		var created, used int64
		if err := rows.Scan(&k.AccessKey, &k.User, &active, &created, &used); err != nil {
			return nil, fmt.Errorf("list access keys of %q: %w", account, err)
		}
		k.Active, k.Created = active == 1, time.Unix(created, 0).UTC()
		if used > 0 {
			k.LastUsed = time.Unix(used, 0).UTC()
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list access keys of %q: %w", account, err)
	}
	return out, nil
}

// SetAccessKeyActive activates or deactivates one of the account's keys.
// A deactivated key signs nothing from the next call on.
func SetAccessKeyActive(ctx context.Context, db *store.DB, account, key string, active bool) error {
	id, _, err := accountRef(ctx, db, account)
	if err != nil {
		return err
	}
	res, err := db.Exec(ctx, `UPDATE access_keys SET active = ? WHERE access_key = ? AND account_id = ?`, boolInt(active), key, id)
	if err != nil {
		return fmt.Errorf("access key %s: %w", key, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("access key %s of account %q: %w", key, account, store.ErrNotFound)
	}
	return nil
}

// DeleteAccessKey removes one of the account's keys for good, and the
// credentials dir WriteKeyCredentials made for it.
func DeleteAccessKey(ctx context.Context, db *store.DB, dataDir, account, key string) error {
	id, _, err := accountRef(ctx, db, account)
	if err != nil {
		return err
	}
	res, err := db.Exec(ctx, `DELETE FROM access_keys WHERE access_key = ? AND account_id = ?`, key, id)
	if err != nil {
		return fmt.Errorf("delete access key %s: %w", key, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("access key %s of account %q: %w", key, account, store.ErrNotFound)
	}
	if dataDir != "" {
		if err := os.RemoveAll(KeyCredentialsDir(dataDir, account, key)); err != nil {
			return fmt.Errorf("delete access key %s: %w", key, err)
		}
	}
	return nil
}

// SetAccountDisabled disables or enables an account. A disabled account's
// keys sign nothing from the next call on; its instances, addresses and
// images stay as they are.
func SetAccountDisabled(ctx context.Context, db *store.DB, account string, disabled bool) error {
	id, admin, err := accountRef(ctx, db, account)
	if err != nil {
		return err
	}
	if admin && disabled {
		return fmt.Errorf("disable %q: %w", account, ErrAdminDisable)
	}
	if _, err := db.Exec(ctx, `UPDATE accounts SET disabled = ? WHERE id = ?`, boolInt(disabled), id); err != nil {
		return fmt.Errorf("account %q: %w", account, err)
	}
	return nil
}

// AccountDisabled reports whether the account is disabled.
func AccountDisabled(ctx context.Context, db *store.DB, account string) (bool, error) {
	var d int
	err := db.QueryRow(ctx, `SELECT disabled FROM accounts WHERE name = ?`, account).Scan(&d)
	if errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("account %q: %w", account, store.ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("account %q: %w", account, err)
	}
	return d == 1, nil
}

// KeyCredentialsDir is where WriteKeyCredentials puts a key's files:
// credentials/ACCOUNT/keys/KEY, beside the account's first ones.
func KeyCredentialsDir(dataDir, account, key string) string {
	return filepath.Join(datadir.Dir(dataDir).Credentials(account), "keys", key)
}

// WriteKeyCredentials writes a key's own eucarc, AWS CLI config and
// credentials (and ca.pem), as WriteCredentials does for the account's
// first key, in KeyCredentialsDir, and returns the directory.
func WriteKeyCredentials(dataDir string, a Account, endpoint, region string, caPEM []byte) (string, error) {
	dir := KeyCredentialsDir(dataDir, a.Name, a.AccessKey)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return "", fmt.Errorf("write credentials: %w", err)
	}
	return writeCredentials(dir, a, endpoint, region, caPEM)
}

// LookupAccessKey implements ec2.CredentialStore. Whether the key is
// active and its account enabled is read from the store on every call,
// so deactivating a key or disabling an account, from any controller or
// command, refuses the very next call; only the unsealed secret is kept
// in memory, tied to the sealed text it came from.
func (c *Cloud) LookupAccessKey(ctx context.Context, accessKey string) (string, ec2.Principal, error) {
	var sealed, account, user string
	var admin, accountAdmin int
	// The cloud administrator's view is the admin account's own keys' and
	// its admin users'; a plain user of that account sees it alone.
	err := c.db.QueryRow(ctx, `SELECT k.secret, a.id, k.user_name,
		CASE WHEN k.user_name = '' THEN a.admin ELSE a.admin * COALESCE(u.admin, 0) END,
		CASE WHEN k.user_name = '' THEN 1 ELSE COALESCE(u.admin, 0) END
		FROM access_keys k JOIN accounts a ON a.id = k.account_id
		LEFT JOIN users u ON u.account_id = k.account_id AND u.name = k.user_name
		WHERE k.access_key = ? AND k.active = 1 AND a.disabled = 0`, accessKey).
		Scan(&sealed, &account, &user, &admin, &accountAdmin)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ec2.Principal{}, ec2.ErrUnknownAccessKey
	}
	if err != nil {
		return "", ec2.Principal{}, fmt.Errorf("look up access key: %w", err)
	}
	secret, ok := c.secrets.get(accessKey, sealed)
	if !ok {
		if secret, err = c.db.Unseal(sealed, accessKey); err != nil {
			return "", ec2.Principal{}, fmt.Errorf("look up access key %s: %w", accessKey, err)
		}
		c.secrets.put(accessKey, sealed, secret)
	}
	return secret, ec2.Principal{AccountID: account, AccessKey: accessKey, Admin: admin == 1, User: user,
		AccountAdmin: accountAdmin == 1}, nil
}

// secretCache keeps unsealed secrets, each with the sealed text it came
// from, at most secretCacheMax of them. It says nothing about whether a
// key may be used.
type secretCache struct {
	mu      sync.Mutex
	secrets map[string][2]string // access key -> {sealed, secret}
}

const secretCacheMax = 10000

func (sc *secretCache) get(key, sealed string) (string, bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	s, ok := sc.secrets[key]
	if !ok || s[0] != sealed {
		return "", false
	}
	return s[1], true
}

func (sc *secretCache) put(key, sealed, secret string) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.secrets == nil || len(sc.secrets) >= secretCacheMax {
		sc.secrets = map[string][2]string{}
	}
	sc.secrets[key] = [2]string{sealed, secret}
}

// keyUse remembers when this controller last wrote each key's last-used
// time, so it writes at most once per KeyUseInterval per key.
type keyUse struct {
	mu      sync.Mutex
	written map[string]time.Time
}

const keyUseMax = 10000

// due reports whether key's use at now should be written, and if so
// counts it as written.
func (u *keyUse) due(key string, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if last, ok := u.written[key]; ok && now.Sub(last) < KeyUseInterval {
		return false
	}
	if u.written == nil || len(u.written) >= keyUseMax {
		u.written = map[string]time.Time{}
	}
	u.written[key] = now
	return true
}

// noteKeyUse records that key signed a call now. The write only moves the
// time forward, so controllers sharing a store never set it back; a
// failure is logged, never the call's.
func (c *Cloud) noteKeyUse(ctx context.Context, key string) {
	if key == "" {
		return
	}
	now := c.now()
	if !c.keyUse.due(key, now) {
		return
	}
	if _, err := c.db.Exec(ctx, `UPDATE access_keys SET last_used = ? WHERE access_key = ? AND last_used < ?`,
		now.Unix(), key, now.Unix()); err != nil {
		c.log.Warn("record access key use", "key", key, "err", err)
	}
}
