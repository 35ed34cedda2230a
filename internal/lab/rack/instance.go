package rack

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"ironbark/images/initramfs"
	"ironbark/internal/lab"
)

// instanceMarker is what the rack's instance prints on its console once
// it has its address and its metadata.
const instanceMarker = "IRONBARK-RACK-INSTANCE-UP"

// guestInit is /init of the instance's ramdisk: a Xen PV guest (console
// hvc0, NIC xen-netfront) that takes its address by DHCP from the node
// agent, asks the metadata service who it is, and says so.
const guestInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
[ -c /dev/hvc0 ] && exec >/dev/hvc0 2>&1
for m in $(cat /lib/modules/*/modules.load-order); do insmod /$m; done
n=0
until ip link show eth0 >/dev/null 2>&1 || [ $n -gt 100 ]; do n=$((n+1)); sleep 0.2; done
ip link set lo up
udhcpc -i eth0 -s /udhcpc.sh -q -f -n -t 30 -T 3 || echo "udhcpc failed"
# Plain HTTP over nc (busybox wget is unreliable in a PV guest).
md() { printf 'GET /latest/meta-data/%s HTTP/1.0\r\nHost: 169.254.169.254\r\n\r\n' "$1" |
	nc -w 20 169.254.169.254 80 | tr -d '\r' | sed '1,/^$/d'; }
echo "INSTANCE-ID=$(md instance-id) LOCAL-IPV4=$(md local-ipv4)"
echo ` + instanceMarker + `
exec sleep 1000000
`

const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
	ifconfig "$interface" "$ip" netmask "$subnet"
	[ -n "$router" ] && route add default gw "$router" dev "$interface"
	echo "DHCP: $interface $ip/$subnet router $router" ;;
esac
`

// buildGuest writes the instance's ramdisk.
func buildGuest(path string, k *lab.Kernel) error {
	bb, err := lab.StaticBusybox()
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = initramfs.Build(f, initramfs.Spec{
		Files: []initramfs.File{
			{Path: "init", Mode: 0o755, Data: []byte(guestInit)},
			{Path: "udhcpc.sh", Mode: 0o755, Data: []byte(udhcpcScript)},
			{Path: "bin/busybox", Mode: 0o755, Source: bb},
			initramfs.Symlink("bin/sh", "busybox"),
			initramfs.Dir("proc", 0o555), initramfs.Dir("sys", 0o555), initramfs.Dir("tmp", 0o1777), initramfs.Dir("dev", 0o755),
		},
		Modules:    []string{"xen_netfront"},
		ModulesDir: k.ModulesDir(),
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("instance ramdisk: %w", err)
	}
	return nil
}

// put copies a host file onto the frontend: through SSH, or, for the lab
// shell, by wget from a one-file HTTP server on the public network.
func (r *runner) put(ctx context.Context, local, remote string) error {
	if s, ok := r.admin.(*sshChannel); ok {
		f, err := os.Open(local)
		if err != nil {
			return err
		}
		defer f.Close()
		cmd := r.hostCommand(ctx, "ssh", "-i", r.art.sshKey, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "root@"+s.addr, "cat > "+remote)
		cmd.Stdin = f
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("copy %s to the frontend: %v: %s", local, err, out)
		}
		return nil
	}
	var ln net.Listener
	listen := func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(r.cfg.Public.Addr().String(), "0"))
		return err
	}
	var err error
	if r.cfg.HostRoute {
		err = listen()
	} else {
		err = r.ns.Do(listen)
	}
	if err != nil {
		return fmt.Errorf("file server for the frontend: %w", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		http.ServeFile(w, req, local)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	_, err = r.admin.run(ctx, fmt.Sprintf("wget -q -O %s http://%s/%s", remote, ln.Addr(), filepath.Base(local)))
	return err
}

var (
	imageID    = regexp.MustCompile(`\b(e[kmr]i-[0-9a-f]{8,})\b`)
	instanceID = regexp.MustCompile(`\bi-[0-9a-f]{8,}\b`)
)

// registerImage imports a file that is on the frontend; returns its id.
func (r *runner) registerImage(ctx context.Context, args string) (string, error) {
	out, err := r.admin.run(ctx, "ironbark image import "+args+" --data-dir /var/lib/ironbark")
	if err != nil {
		return "", err
	}
	m := imageID.FindAllString(out, -1)
	if len(m) == 0 {
		return "", fmt.Errorf("image import %s: no image id in %q", args, out)
	}
	return m[len(m)-1], nil
}

// runInstance registers the instance image on the frontend (the cloud
// kernel as its EKI, the ramdisk above as its ERI, a blank disk as its
// EMI) and runs it with the AWS CLI: it must reach running on a node,
// print its marker in GetConsoleOutput, and terminate.
func (r *runner) runInstance(ctx context.Context) error {
	initrd := filepath.Join(r.work, "instance-initrd.gz")
	if err := buildGuest(initrd, r.art.kernel); err != nil {
		return err
	}
	for _, f := range []struct{ local, remote string }{{r.art.kernel.Vmlinuz, "/tmp/rack-vmlinuz"}, {initrd, "/tmp/rack-initrd.gz"}} {
		if err := r.put(ctx, f.local, f.remote); err != nil {
			return err
		}
	}
	if _, err := r.admin.run(ctx, "truncate -s 64M /tmp/rack-disk.img"); err != nil {
		return err
	}
	eki, err := r.registerImage(ctx, "/tmp/rack-vmlinuz --kind kernel --name rack-kernel")
	if err != nil {
		return err
	}
	eri, err := r.registerImage(ctx, "/tmp/rack-initrd.gz --kind ramdisk --name rack-initrd")
	if err != nil {
		return err
	}
	emi, err := r.registerImage(ctx, fmt.Sprintf("/tmp/rack-disk.img --name rack-demo --kernel %s --ramdisk %s", eki, eri))
	if err != nil {
		return err
	}
	r.say("  on the frontend: ironbark image import ... -> %s (kernel %s, ramdisk %s)", emi, eki, eri)
	out, err := r.aws(ctx, "ec2", "run-instances", "--image-id", emi, "--instance-type", "m1.small",
		"--query", "Instances[0].[InstanceId,State.Name,PrivateIpAddress,Placement.AvailabilityZone]", "--output", "text")
	if err != nil {
		return err
	}
	id := instanceID.FindString(out)
	if id == "" {
		return fmt.Errorf("run-instances: no instance id in %q", out)
	}
	r.res.Instance = id
	r.say("  $ aws ec2 run-instances --image-id %s --instance-type m1.small\n%s", emi, indent(out))
	terminated := false
	defer func() {
		if !terminated {
			sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, _ = r.aws(sctx, "ec2", "terminate-instances", "--instance-ids", id)
		}
	}()
	state := func() (string, error) {
		out, err := r.aws(ctx, "ec2", "describe-instances", "--instance-ids", id,
			"--query", "Reservations[].Instances[].[InstanceId,State.Name,PrivateIpAddress]", "--output", "text")
		return strings.TrimSpace(out), err
	}
	for {
		s, err := state()
		if err != nil {
			return err
		}
		if strings.Contains(s, "\trunning") {
			r.say("  %s", s)
			break
		}
		if strings.Contains(s, "terminated") || strings.Contains(s, "shutting-down") {
			return fmt.Errorf("instance %s ended before it ran: %s", id, s)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("instance %s never running (last: %s): %w", id, s, ctx.Err())
		case <-time.After(5 * time.Second):
		}
	}
	for {
		con, err := r.aws(ctx, "ec2", "get-console-output", "--instance-id", id, "--output", "text")
		if err == nil && strings.Contains(con, instanceMarker) {
			var lines []string
			for _, l := range strings.Split(con, "\n") {
				if strings.Contains(l, "DHCP:") || strings.Contains(l, "INSTANCE-ID=") || strings.Contains(l, instanceMarker) {
					lines = append(lines, strings.TrimSpace(l))
				}
			}
			r.res.Console = con
			r.say("  $ aws ec2 get-console-output --instance-id %s --output text | grep -E 'DHCP|INSTANCE-ID|%s'\n%s", id, instanceMarker, indent(strings.Join(lines, "\n")))
			if !strings.Contains(con, "INSTANCE-ID="+id) {
				return fmt.Errorf("instance %s: the metadata service did not say who it is:\n%s", id, tailLines(con, 20))
			}
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("instance %s: %q never in get-console-output: %w; last:\n%s", id, instanceMarker, ctx.Err(), tailLines(con, 20))
		case <-time.After(5 * time.Second):
		}
	}
	if _, err := r.aws(ctx, "ec2", "terminate-instances", "--instance-ids", id); err != nil {
		return err
	}
	for {
		s, err := state()
		if err != nil {
			return err
		}
		if strings.Contains(s, "terminated") {
			terminated = true
			r.say("  $ aws ec2 terminate-instances --instance-ids %s  ->  %s", id, s)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("instance %s never terminated (last: %s): %w", id, s, ctx.Err())
		case <-time.After(5 * time.Second):
		}
	}
}
