package controller

import (
	"context"
	"fmt"

	"ironbark/controller/ec2"
)

// CallerIdentity is GetCallerIdentity's result: the account, and who in
// it signed: its root (the account's own keys; UserId is the account id,
// as AWS answers for root) or one of its users (arn ...:user/NAME, UserId
// the user's AIDA id).
type CallerIdentity struct {
	Arn     string `xml:"Arn"`
	UserID  string `xml:"UserId"`
	Account string `xml:"Account"`
}

// GetCallerIdentityResponse is STS GetCallerIdentity's answer.
type GetCallerIdentityResponse struct {
	Result CallerIdentity `xml:"GetCallerIdentityResult"`
	ec2.STSResponseMeta
}

func (c *Cloud) stsActionTable() map[string]actionSpec {
	return map[string]actionSpec{"GetCallerIdentity": {nil, c.getCallerIdentity, readOnly}}
}

func (c *Cloud) getCallerIdentity(ctx context.Context, k *call) (any, error) {
	id := CallerIdentity{Arn: UserARN(k.account(), k.Principal.User), UserID: k.account(), Account: k.account()}
	if k.Principal.User != "" {
		err := c.db.QueryRow(ctx, `SELECT id FROM users WHERE account_id = ? AND name = ?`, k.account(), k.Principal.User).Scan(&id.UserID)
		if err != nil {
			return nil, fmt.Errorf("caller identity: %w", err)
		}
	}
	return &GetCallerIdentityResponse{Result: id}, nil
}
