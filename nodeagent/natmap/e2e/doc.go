// Package e2e tests elastic IPs through the whole path: the EC2 API
// (aws-sdk-go-v2 and the AWS CLI) of a real controller, its node API, a real node agent
// (on libvirt's test driver) programming a node namespace's nftables, and
// packets from an "outside" namespace to instance namespaces.
package e2e
