// Package controller is the cloud controller: accounts and credentials, the
// EC2 resources (instances, key pairs, security groups, addresses, images,
// tags) kept in the store, and the actions that the EC2 wire layer
// (controller/ec2) dispatches to. Clusters, nodes and scheduling live in
// controller/cluster; the two meet through Placer (declared here) and
// cluster.InstanceLedger (declared there).
//
// Cloud is the EC2 side: one action per file group (instances.go with
// run.go, lifecycle.go and describe_instances.go; launchqueue.go places
// this controller's queued launches a batch per transaction under the
// store's placement lock; keypairs.go, groups.go,
// addresses.go with addresspool.go, images.go, tags.go, regions.go,
// attributes.go for instance attributes, vpc.go for the synthetic default
// VPC, subnets and network interfaces that automation tools expect, and
// sts.go for STS GetCallerIdentity and iam.go for IAM's user and key
// actions on the same endpoint; users.go, accesskeys.go, audit.go and
// accounting.go for the administration around them). The action table
// (cloud.go) lists each action's accepted parameters, kept next to its
// handler; any other is UnknownParameter. Every Describe action
// runs the one pipeline of describe.go (ids checked first, then filters,
// then order and page) and supplies only its rows and filter fields.
// Actions read and write their tables (schema.go) in one transaction, so a
// failed call changes nothing. Every query a tenant's call makes is
// narrowed by its account id first; the admin account sees all. The data
// dir holds Settings (controller.json: region, VM types, public addresses,
// and the store URL and endpoint other commands reuse) and each account's
// eucarc and AWS CLI files under credentials/NAME (a further key's under
// credentials/NAME/keys/KEY). accesskeys.go manages keys (at most two per
// account, for rotation) and disabled accounts; whether a key may sign is
// read from the store on every call, never cached.
package controller
