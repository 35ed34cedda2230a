// Package controller is the cloud controller: accounts and credentials, the
// EC2 resources (instances, key pairs, security groups, addresses, images,
// tags) kept in the store, and the actions that the EC2 wire layer
// (controller/ec2) dispatches to. Clusters, nodes and scheduling live in
// controller/cluster; the two meet through Placer and InstanceLedger.
package controller
