// Package cluster is the cluster side of the controller: clusters (the
// availability zones, each with a scheduling policy), the nodes enrolled in
// them, one-time enrollment tokens, the CA-backed mTLS node API that agents
// speak (docs/node-api.md), and placement (controller.Placer) over the live
// nodes' capacity minus what the instance ledger says is in use.
//
// The EC2 side owns instance records; this package reaches them only
// through InstanceLedger, declared here.
package cluster
