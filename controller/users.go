package controller

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"ironbark/internal/datadir"
	"ironbark/internal/store"
)

// Users inside an account. An account is its own first identity (its
// "root": the keys made with the account, user ""), and it may hold named
// users, each with its own access keys and credentials. There is no policy
// language: a user is either an account admin or a plain user. Both sign
// EC2 calls that act on the account's resources (DescribeInstances and the
// rest stay account-scoped: a user sees what the account holds); an admin
// user of the cloud's admin account also gets the cloud administrator's
// view, a plain one does not. Users and their keys are managed from the
// frontend (`ironbark user`, `ironbark key --user`); the audit log, usage
// records and STS GetCallerIdentity name the user.

// User is one named identity inside an account.
type User struct {
	Account string // the account's name
	Name    string
	ID      string // AIDA + 17 letters and digits, as IAM's user ids
	Admin   bool   // an account admin; false: a plain user
	Created time.Time
	Keys    int // access keys it holds, active or not
}

// Errors of the user commands.
var (
	// ErrUserExists: the account already has a user of that name.
	ErrUserExists = errors.New("user already exists")
	// ErrUserHasActiveKeys: DeleteUser without force, while one of the
	// user's keys may still sign calls.
	ErrUserHasActiveKeys = errors.New("the user still has an active access key: deactivate its keys first (clients using them then fail, and 'key activate' undoes it), or delete with --force")
)

// userName is IAM's user name alphabet; names of dots only are refused
// because the name is also a directory under the credentials dir.
var userName = regexp.MustCompile(`^[A-Za-z0-9_+=,.@-]{1,64}$`)

// userNameError is a user name refused.
type userNameError string

func (e userNameError) Error() string {
	return fmt.Sprintf("user name %q: want 1 to 64 letters, digits or _+=,.@- (not dots only)", string(e))
}

func validUserName(name string) error {
	if !userName.MatchString(name) || strings.Trim(name, ".") == "" {
		return userNameError(name)
	}
	return nil
}

func usersMigration() store.Migration {
	return store.Migration{ID: "controller/0017-users", SQL: `
CREATE TABLE users (
	account_id TEXT NOT NULL REFERENCES accounts(id),
	name       TEXT NOT NULL,
	id         TEXT NOT NULL UNIQUE,
	admin      INTEGER NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (account_id, name)
);
ALTER TABLE access_keys ADD COLUMN user_name TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN user_name TEXT NOT NULL DEFAULT '';
`}
}

// CreateUser makes a user in the account with its first access key, and
// returns the account with that user and key (secret included) filled in.
func CreateUser(ctx context.Context, db *store.DB, account, name string, admin bool) (Account, error) {
	return createUser(ctx, db, account, name, admin, true)
}

// createUser makes the user, with its first access key when withKey
// (IAM's CreateUser makes none).
func createUser(ctx context.Context, db *store.DB, account, name string, admin, withKey bool) (Account, error) {
	if err := validUserName(name); err != nil {
		return Account{}, err
	}
	a := Account{Name: account, User: name}
	var sealed string
	if withKey {
		a.AccessKey, a.SecretKey = newAccessKey(), newSecretKey()
		var err error
		if sealed, err = db.Seal(a.SecretKey, a.AccessKey); err != nil {
			return Account{}, fmt.Errorf("create user %s/%s: %w", account, name, err)
		}
	}
	now := time.Now().Unix()
	err := db.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if a.ID, a.Admin, err = accountRef(ctx, tx, account); err != nil {
			return err
		}
		a.Admin = a.Admin && admin // the cloud admin's view: only for the admin account's admin users
		if _, err := tx.Exec(ctx, `INSERT INTO users (account_id, name, id, admin, created_at) VALUES (?, ?, ?, ?, ?)`,
			a.ID, name, "AIDA"+randomString(upperBase32, 17), boolInt(admin), now); err != nil {
			if store.IsUniqueViolation(err) {
				return ErrUserExists
			}
			return err
		}
		if !withKey {
			return nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO access_keys (access_key, secret, account_id, user_name, created_at) VALUES (?, ?, ?, ?, ?)`,
			a.AccessKey, sealed, a.ID, name, now)
		return err
	})
	if err != nil {
		return Account{}, fmt.Errorf("create user %s/%s: %w", account, name, err)
	}
	return a, nil
}

// Users lists an account's users by name.
func Users(ctx context.Context, db *store.DB, account string) ([]User, error) {
	id, _, err := accountRef(ctx, db, account)
	if err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `SELECT u.name, u.id, u.admin, u.created_at,
		(SELECT COUNT(*) FROM access_keys k WHERE k.account_id = u.account_id AND k.user_name = u.name)
		FROM users u WHERE u.account_id = ? ORDER BY u.name`, id)
	if err != nil {
		return nil, fmt.Errorf("list users of %q: %w", account, err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u := User{Account: account}
		var admin int
		var created int64
		if err := rows.Scan(&u.Name, &u.ID, &admin, &created, &u.Keys); err != nil {
			return nil, fmt.Errorf("list users of %q: %w", account, err)
		}
		u.Admin, u.Created = admin == 1, time.Unix(created, 0).UTC()
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users of %q: %w", account, err)
	}
	return out, nil
}

// userRef checks that the account has the user.
func userRef(ctx context.Context, q store.Querier, accountID, account, name string) error {
	var id string
	err := q.QueryRow(ctx, `SELECT id FROM users WHERE account_id = ? AND name = ?`, accountID, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("user %s/%s: %w", account, name, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("user %s/%s: %w", account, name, err)
	}
	return nil
}

// DeleteUser removes a user and all its access keys, and their
// credentials dirs, and returns the keys it deleted. Without force it is
// refused (ErrUserHasActiveKeys) while one of the user's keys is active:
// deleting a key cannot be undone, so the cut is made first where it can
// be (deactivate: its clients fail at once, and activate brings them
// back), as when rotating a key. The instances and other resources the
// user made belong to the account and stay; the audit log and the usage
// record keep the user's name.
func DeleteUser(ctx context.Context, db *store.DB, dataDir, account, name string, force bool) ([]string, error) {
	var keys []string
	err := db.InTx(ctx, func(tx *store.Tx) error {
		id, _, err := accountRef(ctx, tx, account)
		if err != nil {
			return err
		}
		if err := userRef(ctx, tx, id, account, name); err != nil {
			return err
		}
		var active int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM access_keys WHERE account_id = ? AND user_name = ? AND active = 1`,
			id, name).Scan(&active); err != nil {
			return err
		}
		if active > 0 && !force {
			return ErrUserHasActiveKeys
		}
		if keys, err = store.Column[string](tx.Query(ctx, `SELECT access_key FROM access_keys WHERE account_id = ? AND user_name = ? ORDER BY access_key`,
			id, name)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM access_keys WHERE account_id = ? AND user_name = ?`, id, name); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM users WHERE account_id = ? AND name = ?`, id, name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete user %s/%s: %w", account, name, err)
	}
	if dataDir != "" {
		dirs := []string{UserCredentialsDir(dataDir, account, name)}
		for _, k := range keys {
			dirs = append(dirs, KeyCredentialsDir(dataDir, account, k))
		}
		for _, d := range dirs {
			if err := os.RemoveAll(d); err != nil {
				return keys, fmt.Errorf("delete user %s/%s: %w", account, name, err)
			}
		}
	}
	return keys, nil
}

// UserCredentialsDir is where a user's first key's files go:
// credentials/ACCOUNT/users/USER.
func UserCredentialsDir(dataDir, account, user string) string {
	return filepath.Join(datadir.Dir(dataDir).Credentials(account), "users", user)
}

// WriteUserCredentials writes a user's eucarc, AWS CLI config and
// credentials (and ca.pem) in UserCredentialsDir and returns the dir.
func WriteUserCredentials(dataDir string, a Account, endpoint, region string, caPEM []byte) (string, error) {
	dir := UserCredentialsDir(dataDir, a.Name, a.User)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return "", fmt.Errorf("write credentials: %w", err)
	}
	return writeCredentials(dir, a, endpoint, region, caPEM)
}

// UserARN is the IAM ARN STS GetCallerIdentity answers for a caller:
// the account's root, or one of its users.
func UserARN(accountID, user string) string {
	if user == "" {
		return "arn:aws:iam::" + accountID + ":root"
	}
	return "arn:aws:iam::" + accountID + ":user/" + user
}
