package controller

import (
	"context"

	"ironbark/controller/ec2"
)

// CallerIdentity is GetCallerIdentity's result: the account, and the
// account's root user (ironbark's accounts have no IAM users).
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
	return &GetCallerIdentityResponse{Result: CallerIdentity{
		Arn: "arn:aws:iam::" + k.account() + ":root", UserID: k.account(), Account: k.account()}}, nil
}
