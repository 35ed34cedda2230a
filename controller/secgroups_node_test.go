package controller

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// TestSecurityGroupsToNodes: what a node is told of its instances' groups
// (rules, peer members), which nodes are woken by a change, and that a
// refused Authorize or Revoke changes nothing any node sees.
func TestSecurityGroupsToNodes(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		var mu sync.Mutex
		woken := map[string]bool{}
		e.cloud.cfg.Notify = func(n string) { mu.Lock(); woken[n] = true; mu.Unlock() }
		wokenNodes := func() []string {
			mu.Lock()
			defer mu.Unlock()
			var out []string
			for n := range woken {
				out = append(out, n)
			}
			clear(woken)
			slices.Sort(out)
			return out
		}
		c := e.client(e.alice)
		group := func(name string) string {
			return aws.ToString(must[*sdk.CreateSecurityGroupOutput](t)(c.CreateSecurityGroup(ctx, &sdk.CreateSecurityGroupInput{
				GroupName: aws.String(name), Description: aws.String(name)})).GroupId)
		}
		web, app := group("web"), group("app")
		tcp := func(from, to int32, cidr, peer string) types.IpPermission {
			p := types.IpPermission{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(from), ToPort: aws.Int32(to)}
			if cidr != "" {
				p.IpRanges = []types.IpRange{{CidrIp: aws.String(cidr)}}
			}
			if peer != "" {
				p.UserIdGroupPairs = []types.UserIdGroupPair{{GroupId: aws.String(peer)}}
			}
			return p
		}
		authorize := func(g string, ps ...types.IpPermission) error {
			_, err := c.AuthorizeSecurityGroupIngress(ctx, &sdk.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(g), IpPermissions: ps})
			return err
		}
		if err := authorize(web, tcp(80, 80, "0.0.0.0/0", ""), tcp(8000, 8100, "", app)); err != nil {
			t.Fatal(err)
		}
		launch := func(g string, n int32) []string {
			out := must[*sdk.RunInstancesOutput](t)(c.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image),
				MinCount: aws.Int32(n), MaxCount: aws.Int32(n), InstanceType: "m1.small", SecurityGroupIds: []string{g}}))
			return runIDs(out)
		}
		w := launch(web, 1)[0]
		wokenNodes()
		apps := launch(app, 2)
		var webNode string
		if err := db.QueryRow(ctx, `SELECT node_id FROM instances WHERE id = ?`, w).Scan(&webNode); err != nil {
			t.Fatal(err)
		}
		if got := wokenNodes(); !slices.Contains(got, webNode) {
			t.Fatalf("instances joining app woke %v, not the node of web (whose rule names app), %s", got, webNode)
		}
		// What the web instance's node is told.
		told := func() (nodeapi.InstanceSpec, map[string]nodeapi.SecurityGroup, string) {
			t.Helper()
			specs := must[[]nodeapi.InstanceSpec](t)(e.cloud.DesiredOnNode(ctx, webNode))
			gs := must[[]nodeapi.SecurityGroup](t)(e.cloud.SecurityGroupsOnNode(ctx, webNode, specs, time.Now()))
			js, _ := json.Marshal(nodeapi.Desired{Instances: specs, SecurityGroups: gs})
			byID := map[string]nodeapi.SecurityGroup{}
			for _, g := range gs {
				byID[g.ID] = g
			}
			for _, s := range specs {
				if s.InstanceID == w {
					return s, byID, string(js)
				}
			}
			t.Fatalf("web instance %s not on its node", w)
			return nodeapi.InstanceSpec{}, nil, ""
		}
		spec, gs, before := told()
		if !slices.Equal(spec.SecurityGroups, []string{web}) {
			t.Fatalf("web instance's groups: %v", spec.SecurityGroups)
		}
		wantRules := []nodeapi.SecurityGroupRule{{Protocol: "tcp", From: 80, To: 80, CIDR: "0.0.0.0/0"},
			{Protocol: "tcp", From: 8000, To: 8100, Group: app}}
		if !slices.Equal(gs[web].Ingress, wantRules) || len(gs[web].Egress) != 1 || gs[web].Egress[0].CIDR != "0.0.0.0/0" {
			t.Fatalf("web as told: %+v", gs[web])
		}
		var appIPs []string
		for _, id := range apps {
			var ip string
			if err := db.QueryRow(ctx, `SELECT private_ip FROM instances WHERE id = ?`, id).Scan(&ip); err != nil {
				t.Fatal(err)
			}
			appIPs = append(appIPs, ip)
		}
		slices.Sort(appIPs)
		if got := gs[app].Members; !slices.Equal(got, appIPs) || len(gs[app].Ingress) != 0 {
			t.Fatalf("app as told (a peer only): members %v, want %v; %+v", got, appIPs, gs[app])
		}

		// Refused requests change nothing a node sees.
		gone := group("gone")
		if _, err := c.DeleteSecurityGroup(ctx, &sdk.DeleteSecurityGroupInput{GroupId: aws.String(gone)}); err != nil {
			t.Fatal(err)
		}
		icmp := func(typ, code int32) types.IpPermission {
			return types.IpPermission{IpProtocol: aws.String("icmp"), FromPort: aws.Int32(typ), ToPort: aws.Int32(code),
				IpRanges: []types.IpRange{{CidrIp: aws.String("192.0.2.0/24")}}}
		}
		for _, bad := range []struct {
			what  string
			perms []types.IpPermission
			code  string
		}{
			{"a CIDR that is not one", []types.IpPermission{tcp(22, 22, "10.0.0.0/8", ""), tcp(23, 23, "10.0.0.256/8", "")}, "InvalidParameterValue"},
			{"a CIDR without its length", []types.IpPermission{tcp(22, 22, "10.0.0.0/8", ""), tcp(23, 23, "10.0.0.1", "")}, "InvalidParameterValue"},
			{"ports out of order", []types.IpPermission{tcp(22, 22, "10.0.0.0/8", ""), tcp(90, 80, "0.0.0.0/0", "")}, "InvalidParameterValue"},
			{"a port past 65535", []types.IpPermission{tcp(22, 22, "10.0.0.0/8", ""), tcp(80, 65536, "0.0.0.0/0", "")}, "InvalidParameterValue"},
			{"an ICMP type out of range", []types.IpPermission{tcp(22, 22, "10.0.0.0/8", ""), icmp(256, -1)}, "InvalidParameterValue"},
			{"an ICMP code out of range", []types.IpPermission{tcp(22, 22, "10.0.0.0/8", ""), icmp(8, 300)}, "InvalidParameterValue"},
			{"a deleted peer group", []types.IpPermission{tcp(22, 22, "10.0.0.0/8", ""), tcp(22, 22, "", gone)}, "InvalidGroup.NotFound"},
			{"a duplicate", []types.IpPermission{tcp(22, 22, "10.0.0.0/8", ""), tcp(80, 80, "0.0.0.0/0", "")}, "InvalidPermission.Duplicate"},
			{"a duplicate within the request", []types.IpPermission{tcp(22, 22, "10.0.0.0/8", ""), tcp(22, 22, "10.0.0.0/8", "")}, "InvalidPermission.Duplicate"},
		} {
			err := authorize(web, bad.perms...)
			wantCode(t, err, bad.code)
			if _, _, now := told(); now != before {
				t.Fatalf("%s: refused, yet the node is told something new:\n%s\nwas\n%s", bad.what, now, before)
			}
		}
		_, err := c.RevokeSecurityGroupIngress(ctx, &sdk.RevokeSecurityGroupIngressInput{GroupId: aws.String(web),
			IpPermissions: []types.IpPermission{tcp(80, 80, "0.0.0.0/0", ""), tcp(81, 81, "0.0.0.0/0", "")}})
		wantCode(t, err, "InvalidPermission.NotFound")
		if _, _, now := told(); now != before {
			t.Fatal("a refused revoke removed a rule")
		}
		if got := wokenNodes(); len(got) != 0 {
			t.Fatalf("refused requests woke nodes %v", got)
		}

		// A revoke reaches the node, and wakes it.
		if _, err := c.RevokeSecurityGroupIngress(ctx, &sdk.RevokeSecurityGroupIngressInput{GroupId: aws.String(web),
			IpPermissions: []types.IpPermission{tcp(80, 80, "0.0.0.0/0", "")}}); err != nil {
			t.Fatal(err)
		}
		if got := wokenNodes(); !slices.Equal(got, []string{webNode}) {
			t.Fatalf("revoke woke %v, want the web node %s", got, webNode)
		}
		if _, gs, _ := told(); !slices.Equal(gs[web].Ingress, wantRules[1:]) {
			t.Fatalf("after revoke the node is told %+v", gs[web].Ingress)
		}
		// An app instance terminated leaves app's members.
		must[*sdk.TerminateInstancesOutput](t)(c.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: apps[:1]}))
		var ip0 string
		if err := db.QueryRow(ctx, `SELECT private_ip FROM instances WHERE id = ?`, apps[1]).Scan(&ip0); err != nil {
			t.Fatal(err)
		}
		if _, gs, _ := told(); !slices.Equal(gs[app].Members, []string{ip0}) {
			t.Fatalf("after a termination app's members are %v, want %s", gs[app].Members, ip0)
		}
	})
}

// A launch wakes its own nodes at once (Notify) and the nodes whose peer
// groups it grew through NotifySoon, each node once.
func TestLaunchWakesPeersSoon(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		var mu sync.Mutex
		now, soon := map[string]int{}, map[string]int{}
		e.cloud.cfg.Notify = func(n string) { mu.Lock(); now[n]++; mu.Unlock() }
		e.cloud.cfg.NotifySoon = func(n string) { mu.Lock(); soon[n]++; mu.Unlock() }
		take := func() (map[string]int, map[string]int) {
			mu.Lock()
			defer mu.Unlock()
			a, b := maps.Clone(now), maps.Clone(soon)
			clear(now)
			clear(soon)
			return a, b
		}
		c := e.client(e.alice)
		group := func(name string) string {
			return aws.ToString(must[*sdk.CreateSecurityGroupOutput](t)(c.CreateSecurityGroup(ctx, &sdk.CreateSecurityGroupInput{
				GroupName: aws.String(name), Description: aws.String(name)})).GroupId)
		}
		web, app := group("web"), group("app")
		if _, err := c.AuthorizeSecurityGroupIngress(ctx, &sdk.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(web),
			IpPermissions: []types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(8000), ToPort: aws.Int32(8000),
				UserIdGroupPairs: []types.UserIdGroupPair{{GroupId: aws.String(app)}}}}}); err != nil {
			t.Fatal(err)
		}
		launch := func(g, zone string, n int32) {
			must[*sdk.RunInstancesOutput](t)(c.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image),
				MinCount: aws.Int32(n), MaxCount: aws.Int32(n), InstanceType: "m1.small", SecurityGroupIds: []string{g},
				Placement: &types.Placement{AvailabilityZone: aws.String(zone)}}))
		}
		launch(web, "zone-b", 1) // on node-b1
		take()
		launch(app, "zone-a", 2) // on node-a1
		n, s := take()
		if !maps.Equal(n, map[string]int{"node-a1": 1}) {
			t.Fatalf("woken at once: %v, want the launch's node once", n)
		}
		if !maps.Equal(s, map[string]int{"node-b1": 1}) {
			t.Fatalf("woken soon: %v, want the web node (its rule names app) once", s)
		}
		// A termination shrinks app: the web node is woken soon too.
		appIDs, err := store.Column[string](db.Query(ctx, `SELECT id FROM instances WHERE node_id = ?`, "node-a1"))
		if err != nil || len(appIDs) != 2 {
			t.Fatalf("app instances: %v %v", appIDs, err)
		}
		must[*sdk.TerminateInstancesOutput](t)(c.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: appIDs[:1]}))
		n, s = take()
		if !maps.Equal(n, map[string]int{"node-a1": 1}) || !maps.Equal(s, map[string]int{"node-b1": 1}) {
			t.Fatalf("termination woke %v at once and %v soon; want node-a1 at once, node-b1 soon", n, s)
		}
		// An app instance that ends by itself (its node reports it
		// terminated) shrinks app too: the web node is woken soon.
		if err := e.cloud.Observe(ctx, "node-a1", []nodeapi.InstanceStatus{{InstanceID: appIDs[1], State: nodeapi.StateTerminated}}); err != nil {
			t.Fatal(err)
		}
		n, s = take()
		if !maps.Equal(n, map[string]int{"node-a1": 1}) || !maps.Equal(s, map[string]int{"node-b1": 1}) {
			t.Fatalf("an instance ending by itself woke %v at once and %v soon; want node-a1 at once, node-b1 soon", n, s)
		}
		// So does a guest launched to terminate on shutdown that shuts
		// itself down.
		out := must[*sdk.RunInstancesOutput](t)(c.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image),
			MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: "m1.small", SecurityGroupIds: []string{app},
			Placement: &types.Placement{AvailabilityZone: aws.String("zone-a")}, InstanceInitiatedShutdownBehavior: types.ShutdownBehaviorTerminate}))
		self := aws.ToString(out.Instances[0].InstanceId)
		for _, st := range []string{nodeapi.StateRunning, nodeapi.StateStopped} {
			if err := e.cloud.Observe(ctx, "node-a1", []nodeapi.InstanceStatus{{InstanceID: self, State: st}}); err != nil {
				t.Fatal(err)
			}
			if st == nodeapi.StateRunning {
				take()
			}
		}
		n, s = take()
		if !maps.Equal(n, map[string]int{"node-a1": 1}) || !maps.Equal(s, map[string]int{"node-b1": 1}) {
			t.Fatalf("a guest's own shutdown (terminate) woke %v at once and %v soon; want node-a1 at once, node-b1 soon", n, s)
		}
		// A rule change is no burst: its nodes are woken at once.
		if _, err := c.RevokeSecurityGroupIngress(ctx, &sdk.RevokeSecurityGroupIngressInput{GroupId: aws.String(web),
			IpPermissions: []types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(8000), ToPort: aws.Int32(8000),
				UserIdGroupPairs: []types.UserIdGroupPair{{GroupId: aws.String(app)}}}}}); err != nil {
			t.Fatal(err)
		}
		if n, s := take(); !maps.Equal(n, map[string]int{"node-b1": 1}) || len(s) != 0 {
			t.Fatalf("revoke woke %v at once and %v soon; want node-b1 at once", n, s)
		}
	})
}
