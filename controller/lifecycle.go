package controller

import (
	"context"
	"database/sql"
	"fmt"

	"ironbark/controller/ec2"
	"ironbark/controller/usage"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
)

// StateChange is one item of Terminate/Stop/StartInstances' answer.
type StateChange struct {
	InstanceID    string        `xml:"instanceId"`
	CurrentState  InstanceState `xml:"currentState"`
	PreviousState InstanceState `xml:"previousState"`
}

// StateChangeResponse is the answer of Terminate, Stop and StartInstances.
type StateChangeResponse struct {
	ec2.ResponseMeta
	Instances []StateChange `xml:"instancesSet>item"`
}

// transition says what a request does to an instance in a state: the new
// state and desired state, or an error.
type transition func(state string) (next, desired string, err error)

func (c *Cloud) changeState(ctx context.Context, k *call, verb string, t transition) (*StateChangeResponse, error) {
	ids, err := k.list("InstanceId")
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, ec2.MissingParameter("InstanceId")
	}
	resp := &StateChangeResponse{}
	var nodes []string
	err = c.db.InTx(ctx, func(tx *store.Tx) error {
		resp.Instances, nodes = resp.Instances[:0], nodes[:0]
		for _, id := range ids {
			var owner, state, desired, node, vmType, user, zone string
			var noTerminate, noStop int
			var cores int64
			err := tx.QueryRow(ctx, `SELECT account_id, state, desired, node_id, vm_type, disable_api_termination,
				disable_api_stop, user_name, zone, cores FROM instances WHERE id = ?`, id).
				Scan(&owner, &state, &desired, &node, &vmType, &noTerminate, &noStop, &user, &zone, &cores)
			if err == nil && !k.owns(owner) {
				err = sql.ErrNoRows
			}
			if err != nil {
				return notFoundOr(err, ec2.NotFound("InvalidInstanceID.NotFound", id))
			}
			// Termination and stop protection (ModifyInstanceAttribute).
			if verb == "terminate" && noTerminate != 0 && state != nodeapi.StateTerminated {
				return ec2.Errorf("OperationNotPermitted", "The instance '%s' may not be terminated. Modify its 'disableApiTermination' instance attribute and try again.", id)
			}
			if verb == "stop" && noStop != 0 {
				return ec2.Errorf("OperationNotPermitted", "The instance '%s' may not be stopped. Modify its 'disableApiStop' instance attribute and try again.", id)
			}
			next, nextDesired, err := t(state)
			if err != nil {
				return err
			}
			if next != state || nextDesired != desired {
				ended := int64(0)
				if next == nodeapi.StateTerminated {
					ended = k.now.Unix()
					if err := addUsage(ctx, tx, node, vmType, -1); err != nil {
						return err
					}
				}
				if _, err := tx.Exec(ctx, `UPDATE instances SET state = ?, desired = ?, reason = ?,
					ended_at = CASE WHEN ? > 0 THEN ? ELSE ended_at END WHERE id = ?`,
					next, nextDesired, fmt.Sprintf("User initiated (%s)", k.now.UTC().Format("2006-01-02 15:04:05 MST")),
					ended, ended, id); err != nil {
					return err
				}
				if next != state {
					if err := usage.Record(ctx, tx, usage.Event{At: k.now, Kind: usage.KindInstance, Resource: id, State: next,
						Account: owner, User: user, VMType: vmType, Cores: cores, Zone: zone, Node: node}); err != nil {
						return err
					}
				}
			}
			if nextDesired == nodeapi.StateTerminated {
				if err := releaseInstanceAddresses(ctx, tx, id, k.now); err != nil {
					return err
				}
			}
			nodes = append(nodes, node)
			resp.Instances = append(resp.Instances, StateChange{InstanceID: id, CurrentState: stateOf(next), PreviousState: stateOf(state)})
		}
		if err := c.notifyInTx(ctx, tx, nodes...); err != nil || verb != "terminate" {
			return err
		}
		// The instances left their groups: the nodes whose rules name
		// one of them as the peer update their member sets.
		groups, err := c.groupsOf(ctx, tx, ids)
		if err != nil {
			return err
		}
		return c.notifyGroupsInTx(ctx, tx, groups, true, nodes...)
	})
	if err != nil {
		return nil, err
	}
	if verb == "terminate" {
		c.takenIPs.forget() // private addresses may have come free
	}
	c.log.Info(verb+" instances", "account", k.account(), "instances", ids)
	return resp, nil
}

func incorrectState(state string) error {
	return ec2.Errorf("IncorrectInstanceState", "This instance is in the '%s' state, which is not valid for this operation.", state)
}

// terminateInstancesParams are the parameters TerminateInstances accepts.
var terminateInstancesParams = []string{
	"InstanceId.N",
}

func (c *Cloud) terminateInstances(ctx context.Context, k *call) (any, error) {
	return c.changeState(ctx, k, "terminate", func(state string) (string, string, error) {
		if state == nodeapi.StateTerminated {
			return state, nodeapi.StateTerminated, nil
		}
		return nodeapi.StateShuttingDown, nodeapi.StateTerminated, nil
	})
}

// stopInstancesParams are the parameters StopInstances accepts.
var stopInstancesParams = []string{
	"InstanceId.N", "Force",
}

func (c *Cloud) stopInstances(ctx context.Context, k *call) (any, error) {
	return c.changeState(ctx, k, "stop", func(state string) (string, string, error) {
		switch state {
		case nodeapi.StatePending, nodeapi.StateRunning:
			return nodeapi.StateStopping, nodeapi.StateStopped, nil
		case nodeapi.StateStopping, nodeapi.StateStopped:
			return state, nodeapi.StateStopped, nil
		}
		return "", "", incorrectState(state)
	})
}

// startInstancesParams are the parameters StartInstances accepts.
var startInstancesParams = []string{
	"InstanceId.N", "AdditionalInfo",
}

func (c *Cloud) startInstances(ctx context.Context, k *call) (any, error) {
	return c.changeState(ctx, k, "start", func(state string) (string, string, error) {
		switch state {
		case nodeapi.StateStopped:
			return nodeapi.StatePending, nodeapi.StateRunning, nil
		case nodeapi.StatePending, nodeapi.StateRunning:
			return state, nodeapi.StateRunning, nil
		}
		return "", "", incorrectState(state)
	})
}

// rebootInstancesParams are the parameters RebootInstances accepts.
var rebootInstancesParams = []string{
	"InstanceId.N",
}

func (c *Cloud) rebootInstances(ctx context.Context, k *call) (any, error) {
	ids, err := k.list("InstanceId")
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, ec2.MissingParameter("InstanceId")
	}
	err = c.db.InTx(ctx, func(tx *store.Tx) error {
		var nodes []string
		for _, id := range ids {
			var owner, state, node string
			err := tx.QueryRow(ctx, `SELECT account_id, state, node_id FROM instances WHERE id = ?`, id).Scan(&owner, &state, &node)
			if err == nil && !k.owns(owner) {
				err = sql.ErrNoRows
			}
			if err != nil {
				return notFoundOr(err, ec2.NotFound("InvalidInstanceID.NotFound", id))
			}
			if state == nodeapi.StateTerminated || state == nodeapi.StateShuttingDown {
				return incorrectState(state)
			}
			if state != nodeapi.StateRunning {
				continue // EC2 reboots only running instances, quietly
			}
			if _, err := tx.Exec(ctx, `UPDATE instances SET reboot_serial = reboot_serial + 1 WHERE id = ?`, id); err != nil {
				return err
			}
			nodes = append(nodes, node)
		}
		return c.notifyInTx(ctx, tx, nodes...)
	})
	if err != nil {
		return nil, err
	}
	return ok()
}
