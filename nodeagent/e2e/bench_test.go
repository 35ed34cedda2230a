package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"
)

// BenchmarkLaunch measures RunInstances to `running` (the domain started by
// the agent) on one node under qemu TCG: cold cache (kernel, ramdisk and a
// 64 MiB root downloaded first) and warm, 1 and 8 instances at once, next
// to `virsh start` of the same domain defined by hand (the floor). It also
// reports the bytes a warm launch allocates on disk (COW: the image is not
// copied). Run it alone:
//
//	go test ./nodeagent/e2e -run '^$' -bench Launch -benchtime 1x
func BenchmarkLaunch(b *testing.B) {
	const reps = 3
	e := setup(b, nil)
	e.startAgent(b, e.token(b), "--max-cores", "32")
	e.waitZone(b)
	emi := e.machineImageSize(b, e.initrd, 64<<20)
	cache := filepath.Join(e.state, "images", "sha256")
	b.ResetTimer()

	results := map[string]time.Duration{}
	measure := func(name string, n int, cold bool) {
		var total time.Duration
		for r := 0; r < reps; r++ {
			if cold {
				emptyDir(b, cache)
			}
			start := time.Now()
			ids := e.runN(b, emi, n)
			e.waitAll(b, ids, types.InstanceStateNameRunning)
			total += time.Since(start)
			e.terminateAll(b, ids)
		}
		results[name] = total / reps
	}
	measure("cold, 1 instance", 1, true)
	measure("warm, 1 instance", 1, false)
	measure("cold, 8 at once", 8, true)
	measure("warm, 8 at once", 8, false)

	// COW proof: what one warm launch adds on disk.
	before := allocated(b, e.state)
	id := e.run(b, emi)
	e.waitAll(b, []string{id}, types.InstanceStateNameRunning)
	written := allocated(b, e.state) - before
	floorDom := e.floorDomain(b, id)
	e.terminateAll(b, []string{id})
	results["virsh start (floor)"], results["libvirt Create, in-process"] = e.timeStart(b, floorDom, reps)
	b.StopTimer()

	floor := results["virsh start (floor)"]
	names := make([]string, 0, len(results))
	for n := range results {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Printf("\nlaunch latency, RunInstances to running (mean of %d), qemu TCG, one node:\n", reps)
	for _, n := range names {
		fmt.Printf("  %-28s %8.0f ms  %5.1fx virsh start\n", n, ms(results[n]), float64(results[n])/float64(floor))
	}
	fmt.Printf("  disk allocated by one warm launch: %d KiB (root image 64 MiB: not copied)\n\n", written>>10)
	b.ReportMetric(ms(results["cold, 1 instance"]), "cold1-ms")
	b.ReportMetric(ms(results["warm, 1 instance"]), "warm1-ms")
	b.ReportMetric(ms(results["cold, 8 at once"]), "cold8-ms")
	b.ReportMetric(ms(results["warm, 8 at once"]), "warm8-ms")
	b.ReportMetric(ms(floor), "virsh-start-ms")
	b.ReportMetric(float64(written), "warm-launch-bytes")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// waitAll polls DescribeInstances (20 ms) until every instance is in want.
func (e *env) waitAll(t testing.TB, ids []string, want types.InstanceStateName) {
	t.Helper()
	deadline := time.Now().Add(bootWait)
	for {
		out, err := e.ec2.DescribeInstances(context.Background(), &sdk.DescribeInstancesInput{InstanceIds: ids})
		if err != nil {
			t.Fatal(err)
		}
		done := 0
		for _, r := range out.Reservations {
			for _, in := range r.Instances {
				if in.State.Name == want {
					done++
				} else if in.State.Name == types.InstanceStateNameTerminated {
					t.Fatalf("%s terminated: %s", aws.ToString(in.InstanceId), aws.ToString(in.StateTransitionReason))
				}
			}
		}
		if done == len(ids) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d instances %s", done, len(ids), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) terminateAll(t testing.TB, ids []string) {
	t.Helper()
	if _, err := e.ec2.TerminateInstances(context.Background(), &sdk.TerminateInstancesInput{InstanceIds: ids}); err != nil {
		t.Fatal(err)
	}
	e.waitAll(t, ids, types.InstanceStateNameTerminated)
}

// floorDomain defines a copy of the instance's domain (own overlay disks on
// the same cached image, own console, no ironbark tag, so the agent leaves
// it alone) and returns its name; it is undefined when the test ends.
func (e *env) floorDomain(t testing.TB, id string) string {
	t.Helper()
	c, err := libvirt.NewConnect(e.uri)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dom, err := c.LookupDomainByName(id)
	if err != nil {
		t.Fatal(err)
	}
	xml, err := dom.GetXMLDesc(libvirt.DOMAIN_XML_INACTIVE)
	dom.Free()
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(xml); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(filepath.Dir(e.state), "floor")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d.Name, d.UUID, d.Metadata = fmt.Sprintf("floor-%d", os.Getpid()), "", nil
	for i := range d.Devices.Disks {
		src := d.Devices.Disks[i].Source.File
		// -U: the instance's qemu holds the write lock.
		info, err := exec.Command("qemu-img", "info", "-U", "--output=json", src.File).CombinedOutput()
		if err != nil {
			t.Fatalf("qemu-img info: %v: %s", err, info)
		}
		dst := filepath.Join(dir, filepath.Base(src.File))
		args := []string{"create", "-q", "-f", "qcow2", dst, "5G"}
		if backing := jsonField(string(info), "backing-filename"); backing != "" {
			args = []string{"create", "-q", "-f", "qcow2", "-F", "raw", "-b", backing, dst}
		}
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v: %s", err, out)
		}
		src.File = dst
	}
	for i := range d.Devices.Serials {
		d.Devices.Serials[i].Source.File.Path = filepath.Join(dir, "console.log")
	}
	for i := range d.Devices.Interfaces {
		d.Devices.Interfaces[i].MAC.Address = "d0:0d:ff:00:00:01"
	}
	x, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := c.DomainDefineXML(x)
	if err != nil {
		t.Fatalf("define floor domain: %v", err)
	}
	fd.Free()
	t.Cleanup(func() { _ = exec.Command("virsh", "-c", e.uri, "undefine", d.Name).Run() })
	return d.Name
}

// timeStart times `virsh start NAME` (a process, as an admin runs it) and
// libvirt's Create over an open connection (what the agent calls), each
// followed by a destroy.
func (e *env) timeStart(t testing.TB, name string, reps int) (virsh, create time.Duration) {
	t.Helper()
	c, err := libvirt.NewConnect(e.uri)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dom, err := c.LookupDomainByName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer dom.Free()
	for r := 0; r < reps; r++ {
		start := time.Now()
		if out, err := exec.Command("virsh", "-c", e.uri, "start", name).CombinedOutput(); err != nil {
			t.Fatalf("virsh start: %v: %s", err, out)
		}
		virsh += time.Since(start)
		if err := dom.Destroy(); err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		if err := dom.Create(); err != nil {
			t.Fatal(err)
		}
		create += time.Since(start)
		if err := dom.Destroy(); err != nil {
			t.Fatal(err)
		}
	}
	return virsh / time.Duration(reps), create / time.Duration(reps)
}

// jsonField pulls a top-level string field out of qemu-img's JSON.
func jsonField(js, name string) string {
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		return ""
	}
	s, _ := m[name].(string)
	return s
}

// allocated sums the disk blocks allocated under dir.
func allocated(t testing.TB, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func emptyDir(t testing.TB, dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}
