package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"ironbark/controller/ec2"
	"ironbark/internal/store"
)

// IAM's user and access-key actions, on the EC2 endpoint (ec2/iam.go):
// what an account admin (the account's own keys, or an admin user) uses
// to manage the account's users and keys with any AWS client. A plain
// user may only read itself (GetUser). There is no policy language, so
// the policy actions are not offered.

// IAMUser is IAM's User element.
type IAMUser struct {
	Path       string   `xml:"Path"`
	UserName   string   `xml:"UserName"`
	UserID     string   `xml:"UserId"`
	Arn        string   `xml:"Arn"`
	CreateDate ec2.Time `xml:"CreateDate"`
}

// IAMAccessKey is IAM's AccessKey (CreateAccessKey; the secret is only
// ever answered there) and AccessKeyMetadata element.
type IAMAccessKey struct {
	UserName        string   `xml:"UserName,omitempty"`
	AccessKeyID     string   `xml:"AccessKeyId"`
	Status          string   `xml:"Status"`
	SecretAccessKey string   `xml:"SecretAccessKey,omitempty"`
	CreateDate      ec2.Time `xml:"CreateDate"`
}

// Answers of the IAM actions.
type (
	CreateUserResponse struct {
		User IAMUser `xml:"CreateUserResult>User"`
		ec2.STSResponseMeta
	}
	GetUserResponse struct {
		User IAMUser `xml:"GetUserResult>User"`
		ec2.STSResponseMeta
	}
	ListUsersResponse struct {
		Users       []IAMUser `xml:"ListUsersResult>Users>member"`
		IsTruncated bool      `xml:"ListUsersResult>IsTruncated"`
		ec2.STSResponseMeta
	}
	CreateAccessKeyResponse struct {
		AccessKey IAMAccessKey `xml:"CreateAccessKeyResult>AccessKey"`
		ec2.STSResponseMeta
	}
	ListAccessKeysResponse struct {
		Keys        []IAMAccessKey `xml:"ListAccessKeysResult>AccessKeyMetadata>member"`
		IsTruncated bool           `xml:"ListAccessKeysResult>IsTruncated"`
		ec2.STSResponseMeta
	}
	// IAMEmptyResponse answers the actions that return nothing.
	IAMEmptyResponse struct {
		ec2.STSResponseMeta
	}
)

func (r *CreateUserResponse) auditResources() []string {
	return []string{r.User.UserName, r.User.UserID}
}
func (r *CreateAccessKeyResponse) auditResources() []string {
	return []string{r.AccessKey.UserName, r.AccessKey.AccessKeyID}
}

func (c *Cloud) iamActionTable() map[string]actionSpec {
	return map[string]actionSpec{
		"CreateUser":      {[]string{"UserName", "Path"}, c.iamCreateUser, audited},
		"GetUser":         {[]string{"UserName"}, c.iamGetUser, readOnly},
		"ListUsers":       {[]string{"PathPrefix", "MaxItems", "Marker"}, c.iamListUsers, readOnly},
		"DeleteUser":      {[]string{"UserName"}, c.iamDeleteUser, audited},
		"CreateAccessKey": {[]string{"UserName"}, c.iamCreateAccessKey, audited},
		"ListAccessKeys":  {[]string{"UserName", "MaxItems", "Marker"}, c.iamListAccessKeys, readOnly},
		"UpdateAccessKey": {[]string{"UserName", "AccessKeyId", "Status"}, c.iamUpdateAccessKey, audited},
		"DeleteAccessKey": {[]string{"UserName", "AccessKeyId"}, c.iamDeleteAccessKey, audited},
	}
}

// IAM's error codes, with the HTTP status IAM sends them with.
func iamError(status int, code, format string, args ...any) *ec2.Error {
	e := ec2.Errorf(code, format, args...)
	e.Status = status
	return e
}

// iamAdmin refuses a caller that is not an account admin.
func iamAdmin(k *call) error {
	if k.Principal.AccountAdmin {
		return nil
	}
	return iamError(http.StatusForbidden, "AccessDenied", "User: %s is not authorized to perform: iam:%s (only the account and its admin users manage users and keys)",
		UserARN(k.account(), k.Principal.User), k.Action)
}

// iamAccount is the caller's account's name (the domain functions take
// names, as the CLI does).
func (c *Cloud) iamAccount(ctx context.Context, k *call) (string, error) {
	var name string
	if err := c.db.QueryRow(ctx, `SELECT name FROM accounts WHERE id = ?`, k.account()).Scan(&name); err != nil {
		return "", fmt.Errorf("iam: account %s: %w", k.account(), err)
	}
	return name, nil
}

// iamAdminAccount refuses a caller that is not an account admin and
// returns the caller's account's name.
func (c *Cloud) iamAdminAccount(ctx context.Context, k *call) (string, error) {
	if err := iamAdmin(k); err != nil {
		return "", err
	}
	return c.iamAccount(ctx, k)
}

// iamNamedUser is iamAdminAccount for an action that needs UserName.
func (c *Cloud) iamNamedUser(ctx context.Context, k *call) (account, name string, err error) {
	if account, err = c.iamAdminAccount(ctx, k); err != nil {
		return "", "", err
	}
	if name, err = k.required("UserName"); err != nil {
		return "", "", err
	}
	return account, name, nil
}

// iamErr maps the user and key functions' errors to IAM's codes.
func iamErr(err error, user string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return iamError(http.StatusNotFound, "NoSuchEntity", "The user with name %s cannot be found.", user)
	case errors.Is(err, ErrUserExists):
		return iamError(http.StatusConflict, "EntityAlreadyExists", "User with name %s already exists.", user)
	case errors.Is(err, ErrTooManyKeys):
		return iamError(http.StatusConflict, "LimitExceeded", "Cannot exceed quota for AccessKeysPerUser: %d", MaxAccessKeys)
	case errors.Is(err, ErrUserHasActiveKeys):
		return iamError(http.StatusConflict, "DeleteConflict", "Cannot delete entity, must deactivate its access keys first.")
	}
	var ve userNameError
	if errors.As(err, &ve) {
		return iamError(http.StatusBadRequest, "ValidationError", "%s", ve.Error())
	}
	return err
}

func (c *Cloud) iamUser(ctx context.Context, accountID, name string) (IAMUser, error) {
	var id string
	var created int64
	err := c.db.QueryRow(ctx, `SELECT id, created_at FROM users WHERE account_id = ? AND name = ?`, accountID, name).Scan(&id, &created)
	if err != nil {
		return IAMUser{}, notFoundOr(err, iamError(http.StatusNotFound, "NoSuchEntity", "The user with name %s cannot be found.", name))
	}
	return IAMUser{Path: "/", UserName: name, UserID: id, Arn: UserARN(accountID, name), CreateDate: ec2.Time{Time: time.Unix(created, 0).UTC()}}, nil
}

func (c *Cloud) iamCreateUser(ctx context.Context, k *call) (any, error) {
	if p := k.str("Path"); p != "" && p != "/" {
		return nil, iamError(http.StatusBadRequest, "ValidationError", "Only the path / is supported.")
	}
	account, name, err := c.iamNamedUser(ctx, k)
	if err != nil {
		return nil, err
	}
	// A user made here is a plain user with no key yet (as IAM's
	// CreateUser); `ironbark user create --admin` makes admins.
	if _, err := createUser(ctx, c.db, account, name, false, false); err != nil {
		return nil, iamErr(err, name)
	}
	u, err := c.iamUser(ctx, k.account(), name)
	if err != nil {
		return nil, err
	}
	return &CreateUserResponse{User: u}, nil
}

func (c *Cloud) iamGetUser(ctx context.Context, k *call) (any, error) {
	name := k.str("UserName")
	if name == "" || name == k.Principal.User {
		if k.Principal.User == "" { // the account itself: IAM answers its root
			return &GetUserResponse{User: IAMUser{UserID: k.account(), Arn: UserARN(k.account(), "")}}, nil
		}
		name = k.Principal.User
	} else if err := iamAdmin(k); err != nil {
		return nil, err
	}
	u, err := c.iamUser(ctx, k.account(), name)
	if err != nil {
		return nil, err
	}
	return &GetUserResponse{User: u}, nil
}

func (c *Cloud) iamListUsers(ctx context.Context, k *call) (any, error) {
	account, err := c.iamAdminAccount(ctx, k)
	if err != nil {
		return nil, err
	}
	users, err := Users(ctx, c.db, account)
	if err != nil {
		return nil, err
	}
	resp := &ListUsersResponse{Users: []IAMUser{}}
	for _, u := range users {
		resp.Users = append(resp.Users, IAMUser{Path: "/", UserName: u.Name, UserID: u.ID, Arn: UserARN(k.account(), u.Name),
			CreateDate: ec2.Time{Time: u.Created}})
	}
	return resp, nil
}

func (c *Cloud) iamDeleteUser(ctx context.Context, k *call) (any, error) {
	account, name, err := c.iamNamedUser(ctx, k)
	if err != nil {
		return nil, err
	}
	if _, err := DeleteUser(ctx, c.db, c.cfg.DataDir, account, name, false); err != nil {
		return nil, iamErr(err, name)
	}
	return &IAMEmptyResponse{}, nil
}

// iamKeyOwner is whose keys a key action names: UserName, or the caller
// itself without it.
func iamKeyOwner(k *call) string {
	if u := k.str("UserName"); u != "" {
		return u
	}
	return k.Principal.User
}

func (c *Cloud) iamCreateAccessKey(ctx context.Context, k *call) (any, error) {
	account, err := c.iamAdminAccount(ctx, k)
	if err != nil {
		return nil, err
	}
	user := iamKeyOwner(k)
	a, err := CreateAccessKey(ctx, c.db, account, user)
	if err != nil {
		return nil, iamErr(err, user)
	}
	return &CreateAccessKeyResponse{AccessKey: IAMAccessKey{UserName: user, AccessKeyID: a.AccessKey, Status: "Active",
		SecretAccessKey: a.SecretKey, CreateDate: ec2.Time{Time: k.now.UTC().Truncate(time.Second)}}}, nil
}

func (c *Cloud) iamListAccessKeys(ctx context.Context, k *call) (any, error) {
	account, err := c.iamAdminAccount(ctx, k)
	if err != nil {
		return nil, err
	}
	user := iamKeyOwner(k)
	if user != "" {
		if err := userRef(ctx, c.db, k.account(), account, user); err != nil {
			return nil, iamErr(err, user)
		}
	}
	keys, err := AccessKeys(ctx, c.db, account)
	if err != nil {
		return nil, err
	}
	resp := &ListAccessKeysResponse{Keys: []IAMAccessKey{}}
	for _, key := range keys {
		if key.User != user {
			continue
		}
		st := "Inactive"
		if key.Active {
			st = "Active"
		}
		resp.Keys = append(resp.Keys, IAMAccessKey{UserName: user, AccessKeyID: key.AccessKey, Status: st, CreateDate: ec2.Time{Time: key.Created}})
	}
	return resp, nil
}

// iamKey checks that the key named belongs to the user the call names
// (or the caller) in the caller's account.
func (c *Cloud) iamKey(ctx context.Context, k *call) (account, key string, err error) {
	if key, err = k.required("AccessKeyId"); err != nil {
		return "", "", err
	}
	if account, err = c.iamAccount(ctx, k); err != nil {
		return "", "", err
	}
	var n int
	if err := c.db.QueryRow(ctx, `SELECT COUNT(*) FROM access_keys WHERE access_key = ? AND account_id = ? AND user_name = ?`,
		key, k.account(), iamKeyOwner(k)).Scan(&n); err != nil {
		return "", "", err
	}
	if n == 0 {
		return "", "", iamError(http.StatusNotFound, "NoSuchEntity", "The Access Key with id %s cannot be found.", key)
	}
	return account, key, nil
}

func (c *Cloud) iamUpdateAccessKey(ctx context.Context, k *call) (any, error) {
	if err := iamAdmin(k); err != nil {
		return nil, err
	}
	status, err := k.required("Status")
	if err != nil {
		return nil, err
	}
	if status != "Active" && status != "Inactive" {
		return nil, iamError(http.StatusBadRequest, "ValidationError", "Status must be Active or Inactive.")
	}
	account, key, err := c.iamKey(ctx, k)
	if err != nil {
		return nil, err
	}
	if err := SetAccessKeyActive(ctx, c.db, account, key, status == "Active"); err != nil {
		return nil, err
	}
	return &IAMEmptyResponse{}, nil
}

func (c *Cloud) iamDeleteAccessKey(ctx context.Context, k *call) (any, error) {
	if err := iamAdmin(k); err != nil {
		return nil, err
	}
	account, key, err := c.iamKey(ctx, k)
	if err != nil {
		return nil, err
	}
	if err := DeleteAccessKey(ctx, c.db, c.cfg.DataDir, account, key); err != nil {
		return nil, err
	}
	return &IAMEmptyResponse{}, nil
}
