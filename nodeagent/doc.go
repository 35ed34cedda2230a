// Package nodeagent is the node controller: it enrolls with the cloud
// controller (internal/nodeapi), reports capacity and instance states in
// heartbeats, waits for the instances the controller wants on the node, and
// makes libvirt match: it fetches images by digest into the cache
// (nodeagent/imagecache), makes a copy-on-write disk per instance with
// qemu-img, defines and starts the domain (XML through libvirtxml) on the
// cluster bridge, captures the serial console to a file, and stops, reboots
// and terminates instances. Domains carry their instance ID in their libvirt
// metadata, so a restarted agent re-adopts them and removes those the
// controller no longer wants. Instance networking (network.go, netsvc.go,
// antispoof.go, firewall.go, vlan.go): DHCP and metadata on the bridge,
// a bridge filter per port, security groups (nodeagent/secgroups),
// elastic IPs (nodeagent/natmap), and in MANAGED mode a bridge per VLAN.
package nodeagent
