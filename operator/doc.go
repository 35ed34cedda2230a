// Package operator is what the operator's dashboard (`ironbark tui`)
// reads and does, on this frontend or on a remote one: Local reads the
// frontend's store and makes the changes there; Admin serves Local's
// snapshot and actions as the administrator's actions of the EC2
// endpoint (ec2.AdminPath, the Query API signed with the cloud
// administrator's access key, answered in JSON); Remote is the client of
// those actions. Local and Remote are both a tui.DashboardSource.
package operator
