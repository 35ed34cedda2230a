package operator

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"ironbark/controller/ec2"
	"ironbark/tui"
)

// The administrator's actions at ec2.AdminPath.
const (
	ActionDescribeDashboard = "DescribeDashboard" // -> tui.Snapshot
	ActionCreateCluster     = "CreateCluster"     // Name
	ActionReinstallHost     = "ReinstallHost"     // Host
	ActionSetNodeDrained    = "SetNodeDrained"    // Node, Drained=true|false
)

// Source is what Admin serves: Local on the frontend.
type Source interface {
	Snapshot(ctx context.Context) (tui.Snapshot, error)
	AddCluster(ctx context.Context, name string) error
	Reinstall(ctx context.Context, host string) error
	SetDrained(ctx context.Context, node string, drained bool) error
}

// Admin answers the administrator's actions (ec2.Config.Admin): the
// EC2 endpoint has already checked the signature and that the caller is
// the administrator.
type Admin struct {
	Source Source
}

// Done is the answer of an action that changes something.
type Done struct {
	Return bool `json:"return"`
}

// ServeEC2 implements ec2.Handler.
func (a Admin) ServeEC2(ctx context.Context, r *ec2.Request) (any, error) {
	q := r.Query()
	switch r.Action {
	case ActionDescribeDashboard:
		if err := q.Check(); err != nil {
			return nil, err
		}
		return a.Source.Snapshot(ctx)
	case ActionCreateCluster:
		if err := q.Check("Name"); err != nil {
			return nil, err
		}
		name, err := q.Required("Name")
		if err != nil {
			return nil, err
		}
		return done(a.Source.AddCluster(ctx, name))
	case ActionReinstallHost:
		if err := q.Check("Host"); err != nil {
			return nil, err
		}
		host, err := q.Required("Host")
		if err != nil {
			return nil, err
		}
		return done(a.Source.Reinstall(ctx, host))
	case ActionSetNodeDrained:
		if err := q.Check("Node", "Drained"); err != nil {
			return nil, err
		}
		node, err := q.Required("Node")
		if err != nil {
			return nil, err
		}
		s, err := q.Required("Drained")
		if err != nil {
			return nil, err
		}
		drained, err := strconv.ParseBool(s)
		if err != nil {
			return nil, ec2.InvalidParameterValue("Drained: want true or false, not %q", s)
		}
		return done(a.Source.SetDrained(ctx, node, drained))
	}
	return nil, ec2.InvalidAction(r.Action)
}

// done turns a Source error into the client's: what the operator did
// wrong (no such host, a cluster that exists) is InvalidParameterValue
// with the reason; ec2 errors pass as they are.
func done(err error) (any, error) {
	if err == nil {
		return Done{Return: true}, nil
	}
	var e *ec2.Error
	if errors.As(err, &e) {
		return nil, err
	}
	return nil, ec2.InvalidParameterValue("%s", fmt.Sprint(err))
}
