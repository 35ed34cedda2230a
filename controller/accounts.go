package controller

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"ironbark/internal/atomicfile"
	"ironbark/internal/datadir"
	"ironbark/internal/store"
)

// AdminAccount is the name of the cloud administrator's account, made on
// the controller's first start. It sees every account's resources.
const AdminAccount = "admin"

// Account is a tenant of the cloud with one access key: the account's
// own (User "") or one of its users'.
type Account struct {
	ID        string // 12 digits
	Name      string
	User      string // the user the key belongs to; "" for the account itself
	Admin     bool
	AccessKey string
	SecretKey string
}

// ErrAccountExists is returned by CreateAccount for a name already taken.
var ErrAccountExists = errors.New("account already exists")

var accountName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// CreateAccount makes an account and its first access key.
func CreateAccount(ctx context.Context, db *store.DB, name string, admin bool) (Account, error) {
	if !accountName.MatchString(name) {
		return Account{}, fmt.Errorf("create account %q: name must be lowercase letters, digits, '.', '_' or '-'", name)
	}
	a := Account{ID: newAccountID(), Name: name, Admin: admin, AccessKey: newAccessKey(), SecretKey: newSecretKey()}
	now := time.Now().Unix()
	sealed, err := db.Seal(a.SecretKey, a.AccessKey)
	if err != nil {
		return Account{}, fmt.Errorf("create account %q: %w", name, err)
	}
	err = db.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO accounts (id, name, admin, created_at) VALUES (?, ?, ?, ?)`,
			a.ID, a.Name, boolInt(admin), now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO access_keys (access_key, secret, account_id, created_at) VALUES (?, ?, ?, ?)`,
			a.AccessKey, sealed, a.ID, now)
		return err
	})
	if store.IsUniqueViolation(err) {
		if _, lerr := LookupAccount(ctx, db, name); lerr == nil {
			return Account{}, fmt.Errorf("create account %q: %w", name, ErrAccountExists)
		}
	}
	if err != nil {
		return Account{}, fmt.Errorf("create account %q: %w", name, err)
	}
	return a, nil
}

// LookupAccount finds an account by name and its oldest active key (none,
// AccessKey empty, when every key is deactivated or deleted).
func LookupAccount(ctx context.Context, db *store.DB, name string) (Account, error) {
	var a Account
	var admin int
	err := db.QueryRow(ctx, `SELECT a.id, a.name, a.admin, COALESCE(k.access_key, ''), COALESCE(k.secret, '')
		FROM accounts a LEFT JOIN access_keys k ON k.account_id = a.id AND k.active = 1
		AND k.user_name = '' WHERE a.name = ? ORDER BY k.created_at, k.access_key LIMIT 1`, name).
		Scan(&a.ID, &a.Name, &admin, &a.AccessKey, &a.SecretKey)
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, fmt.Errorf("account %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return Account{}, fmt.Errorf("account %q: %w", name, err)
	}
	if a.AccessKey != "" {
		if a.SecretKey, err = db.Unseal(a.SecretKey, a.AccessKey); err != nil {
			return Account{}, fmt.Errorf("account %q: access key %s: %w", name, a.AccessKey, err)
		}
	}
	a.Admin = admin == 1
	return a, nil
}

// SealSecrets encrypts the access keys' secrets still stored in plaintext
// (by a version before sealing) and reports how many it sealed. It fails
// when a sealed secret does not unseal with this store's key file, so a
// controller given the wrong key file refuses to start rather than
// refusing every signature.
func SealSecrets(ctx context.Context, db *store.DB) (int, error) {
	type row struct{ key, secret string }
	var rows []row
	rs, err := db.Query(ctx, `SELECT access_key, secret FROM access_keys`)
	if err != nil {
		return 0, fmt.Errorf("seal secrets: %w", err)
	}
	for rs.Next() {
		var r row
		if err := rs.Scan(&r.key, &r.secret); err != nil {
			rs.Close()
			return 0, fmt.Errorf("seal secrets: %w", err)
		}
		rows = append(rows, r)
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return 0, fmt.Errorf("seal secrets: %w", err)
	}
	n := 0
	for _, r := range rows {
		if store.IsSealed(r.secret) {
			if _, err := db.Unseal(r.secret, r.key); err != nil {
				return n, fmt.Errorf("access key %s: %w", r.key, err)
			}
			continue
		}
		sealed, err := db.Seal(r.secret, r.key)
		if err != nil {
			return n, fmt.Errorf("seal secrets: %w", err)
		}
		// Only if still the plaintext read: another controller may have
		// sealed it meanwhile.
		res, err := db.Exec(ctx, `UPDATE access_keys SET secret = ? WHERE access_key = ? AND secret = ?`, sealed, r.key, r.secret)
		if err != nil {
			return n, fmt.Errorf("seal secret of %s: %w", r.key, err)
		}
		if k, _ := res.RowsAffected(); k == 1 {
			n++
		}
	}
	return n, nil
}

// EnsureAdmin returns the administrator's account, making it if this is
// the cloud's first start. Several controllers starting at once on one
// PostgreSQL agree on one admin: the unique name decides.
func EnsureAdmin(ctx context.Context, db *store.DB) (Account, error) {
	a, err := LookupAccount(ctx, db, AdminAccount)
	if err == nil {
		return a, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return Account{}, err
	}
	a, err = CreateAccount(ctx, db, AdminAccount, true)
	if errors.Is(err, ErrAccountExists) {
		return LookupAccount(ctx, db, AdminAccount)
	}
	return a, err
}

// WriteCredentials writes DIR/credentials/NAME/{eucarc,config,credentials}
// for the account, readable by root only, and returns the directory (see
// WriteKeyCredentials for a key's own).
// endpoint is the EC2 URL users reach the controller at. caPEM, when the
// endpoint is HTTPS, is the cloud's CA certificate: it goes beside them as
// ca.pem, named by the eucarc (AWS_CA_BUNDLE) and the AWS CLI config
// (ca_bundle), so the clients verify the controller.
func WriteCredentials(dataDir string, a Account, endpoint, region string, caPEM []byte) (string, error) {
	return writeCredentials(datadir.Dir(dataDir).Credentials(a.Name), a, endpoint, region, caPEM)
}

func writeCredentials(dir string, a Account, endpoint, region string, caPEM []byte) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("write credentials: %w", err)
	}
	files := map[string]string{}
	bundle, bundleEnv, bundleConf := filepath.Join(dir, "ca.pem"), "", ""
	if len(caPEM) > 0 {
		files["ca.pem"] = string(caPEM)
		bundleEnv = "export AWS_CA_BUNDLE=" + bundle + "\n"
		bundleConf = "ca_bundle = " + bundle + "\n"
	} else {
		os.Remove(bundle) // plain HTTP now: no stale bundle named anywhere
	}
	who := fmt.Sprintf("account %s (%s)", a.Name, a.ID)
	if a.User != "" {
		who = fmt.Sprintf("user %s of account %s (%s)", a.User, a.Name, a.ID)
	}
	files["eucarc"] = fmt.Sprintf(`# ironbark credentials for %s
# Use: . %s
export EC2_URL=%s
export AWS_ENDPOINT_URL=%s
export AWS_ACCESS_KEY_ID=%s
export AWS_SECRET_ACCESS_KEY=%s
export AWS_DEFAULT_REGION=%s
export EC2_ACCESS_KEY=%s
export EC2_SECRET_KEY=%s
export EC2_ACCOUNT_NUMBER=%s
export AWS_CONFIG_FILE=%s
export AWS_SHARED_CREDENTIALS_FILE=%s
export AWS_EC2_METADATA_DISABLED=true
%s`, who, filepath.Join(dir, "eucarc"), endpoint, endpoint, a.AccessKey, a.SecretKey, region,
		a.AccessKey, a.SecretKey, a.ID, filepath.Join(dir, "config"), filepath.Join(dir, "credentials"), bundleEnv)
	files["config"] = fmt.Sprintf("[default]\nregion = %s\nendpoint_url = %s\noutput = json\n%s", region, endpoint, bundleConf)
	files["credentials"] = fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", a.AccessKey, a.SecretKey)
	for name, body := range files {
		// A controller rewrites these at every start: leave a file that
		// already says the same alone (no churn on the data partition, and
		// a reader of it never meets a half-replaced directory).
		if old, err := os.ReadFile(filepath.Join(dir, name)); err == nil && string(old) == body {
			continue
		}
		if err := atomicfile.Write(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			return "", fmt.Errorf("write credentials: %w", err)
		}
	}
	return dir, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TokenKey returns the key that signs NextToken values, made once per
// cloud and kept in the store so that every controller on it, and the
// same controller after a restart, accepts the others' tokens.
func TokenKey(ctx context.Context, db *store.DB) ([]byte, error) {
	fresh := randomString(secretLetters, 43)
	if _, err := db.Exec(ctx, `INSERT INTO controller_secrets (name, value) VALUES ('next-token-key', ?)
		ON CONFLICT (name) DO NOTHING`, fresh); err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	var key string
	if err := db.QueryRow(ctx, `SELECT value FROM controller_secrets WHERE name = 'next-token-key'`).Scan(&key); err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	return []byte(key), nil
}
