package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ironbark/internal/lab"
)

// ansiblePlaybook is what a user of Ansible's amazon.aws collection (from
// Debian's ansible package) runs against their cloud: a key, a group with
// a rule, an instance waited for until it runs, the instance found again,
// a second run that changes nothing, and everything removed.
const ansiblePlaybook = `
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: /usr/bin/python3
  module_defaults:
    group/amazon.aws.aws:
      endpoint_url: "{{ endpoint }}"
      region: "{{ region }}"
  tasks:
    - name: key
      amazon.aws.ec2_key: {name: ansible-key}
      register: key
    - assert: {that: ["key.changed", "key.key.private_key is search('PRIVATE KEY')"]}
    - name: group
      amazon.aws.ec2_security_group:
        name: ansible-web
        description: web servers
        rules: [{proto: tcp, ports: [22], cidr_ip: 0.0.0.0/0}]
      register: sg
    - assert: {that: ["sg.changed", "sg.group_id is match('sg-')"]}
    - name: instance
      amazon.aws.ec2_instance:
        name: ansible-web-1
        image_id: "{{ image }}"
        instance_type: m1.small
        key_name: ansible-key
        security_group: ansible-web
        wait: true
        wait_timeout: 120
        state: running
      register: inst
    - assert: {that: ["inst.changed", "inst.instances | length == 1", "inst.instances[0].state.name == 'running'"]}
    - name: find it
      amazon.aws.ec2_instance_info:
        filters: {"tag:Name": ansible-web-1, instance-state-name: running}
      register: info
    - assert: {that: ["info.instances | length == 1", "info.instances[0].instance_id == inst.instance_ids[0]", "info.instances[0].security_groups[0].group_name == 'ansible-web'", "info.instances[0].key_name == 'ansible-key'"]}
    - name: key again
      amazon.aws.ec2_key: {name: ansible-key}
      register: key2
    - name: group again
      amazon.aws.ec2_security_group:
        name: ansible-web
        description: web servers
        rules: [{proto: tcp, ports: [22], cidr_ip: 0.0.0.0/0}]
      register: sg2
    - name: instance again
      amazon.aws.ec2_instance:
        name: ansible-web-1
        image_id: "{{ image }}"
        instance_type: m1.small
        key_name: ansible-key
        security_group: ansible-web
        state: running
      register: inst2
    - assert: {that: ["not key2.changed", "not sg2.changed", "not inst2.changed"]}
    - name: instance absent
      amazon.aws.ec2_instance: {instance_ids: "{{ inst.instance_ids }}", state: absent, wait: true, wait_timeout: 120}
      register: gone
    - assert: {that: ["gone.changed"]}
    - name: group absent
      amazon.aws.ec2_security_group: {name: ansible-web, state: absent}
      register: sg3
    - name: key absent
      amazon.aws.ec2_key: {name: ansible-key, state: absent}
      register: key3
    - assert: {that: ["sg3.changed", "key3.changed"]}
    - name: nothing left
      amazon.aws.ec2_instance_info:
        filters: {instance-state-name: [pending, running, stopping, stopped]}
      register: left
    - assert: {that: ["left.instances | length == 0"]}
`

// TestAnsibleAmazonAWS runs Ansible's amazon.aws modules against `ironbark
// controller` with a real node agent (ironbark-node on libvirt's test
// driver, so instances run without qemu).
func TestAnsibleAmazonAWS(t *testing.T) {
	lab.Require(t, "ansible-playbook", "qemu-img")
	if _, err := os.Stat("/usr/lib/python3/dist-packages/ansible_collections/amazon/aws"); err != nil {
		lab.Missing(t, "Debian's ansible package (amazon.aws collection)")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import boto3").Run(); err != nil {
		lab.Missing(t, "python3-boto3 for /usr/bin/python3")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	nodeAPI := freeAddr(t)
	dataDir, endpoint := startControllerIn(t, t.TempDir(), "--listen", "127.0.0.1:0", "--node-listen", nodeAPI, "--region", "us-east-1")

	// A node: ironbark-node on libvirt's test driver.
	mustRun(t, "cluster", "add", "zone-a", "--data-dir", dataDir)
	token := strings.TrimSpace(mustRun(t, "node", "token", "--cluster", "zone-a", "--data-dir", dataDir))
	bin := filepath.Join(t.TempDir(), "ironbark-node")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "ironbark/cmd/ironbark-node").CombinedOutput(); err != nil {
		t.Fatalf("build ironbark-node: %v\n%s", err, out)
	}
	nodeLog, err := os.Create(filepath.Join(t.TempDir(), "node.log"))
	if err != nil {
		t.Fatal(err)
	}
	node := exec.CommandContext(ctx, bin, "--controller", "https://"+nodeAPI, "--token", token, "--libvirt", "test:///default",
		"--state-dir", t.TempDir(), "--identity", "", "--hostname", "ansible-node", "--max-cores", "4",
		"--max-memory-mib", "4096", "--max-disk-gib", "40", "--stop-timeout", "1s")
	node.Stdout, node.Stderr = nodeLog, nodeLog
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = node.Process.Signal(os.Interrupt)
		_ = node.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(nodeLog.Name())
			t.Logf("node log:\n%s", b)
		}
	})

	// An image the node can fetch.
	img := filepath.Join(t.TempDir(), "tiny.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	emi := strings.TrimSpace(mustRun(t, "image", "import", img, "--name", "tiny", "--public", "--data-dir", dataDir))

	// Ansible as an account's user: the account's AWS config and CA.
	mustRun(t, "account", "create", "ansible", "--data-dir", dataDir)
	creds := filepath.Join(dataDir, "credentials", "ansible")
	work := t.TempDir()
	playbook := filepath.Join(work, "site.yml")
	if err := os.WriteFile(playbook, []byte(ansiblePlaybook), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "ansible-playbook", "-i", "localhost,", playbook,
		"-e", "endpoint="+endpoint, "-e", "region=us-east-1", "-e", "image="+emi)
	cmd.Dir = work
	cmd.Env = append(clientEnv(t, creds), "AWS_CA_BUNDLE="+filepath.Join(creds, "ca.pem"),
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(work, "tmp"), "ANSIBLE_HOME="+filepath.Join(work, "home"),
		"ANSIBLE_NOCOLOR=1", "ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3", "ANSIBLE_HOST_KEY_CHECKING=False")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ansible-playbook: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "failed=0") {
		t.Fatalf("ansible-playbook:\n%s", out)
	}
	t.Logf("ansible-playbook:\n%s", lastLines(string(out), 4))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
