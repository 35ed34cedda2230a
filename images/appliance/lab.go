package appliance

import "ironbark/roll"

// LabMarker is what the lab appliance prints on its serial console once
// its own root filesystem runs /etc/init.d/rcS.
const LabMarker = "IRONBARK-LAB-APPLIANCE-UP"

// LabProfile is the tiny lab appliance (os busybox: no apt, the host's
// busybox-static and a given kernel), for tests that need a real
// appliance image in seconds rather than minutes. It exercises every
// part of a profile: a file with a mode, an appended file, an owner, and
// a post script whose result the booted system prints.
func LabProfile() roll.Profile {
	o := func(pos string) roll.Origin {
		return roll.Origin{Roll: "lab", Node: "lab", Pos: "nodes/lab.xml:" + pos}
	}
	return roll.Profile{
		Appliance: "lab", Arch: "x86_64", OS: OSBusybox,
		Nodes: []roll.ProfileNode{{Name: "lab", Origin: o("1")}},
		Files: []roll.File{
			{Path: "/etc/init.d/rcS", Mode: 0o755, Owner: "root:root", Origin: o("4"), Content: []byte(`#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "lab appliance: $(cat /etc/ironbark-post) / $(cat /etc/motd)"
echo "lab appliance: root is $(sed -n 's/.* root=\([^ ]*\).*/\1/p' /proc/cmdline)"
echo ` + LabMarker + `
poweroff -f
`)},
			{Path: "/etc/motd", Mode: 0o644, Origin: o("12"), Content: []byte("ironbark lab")},
			{Path: "/etc/motd", Append: true, Origin: o("13"), Content: []byte(" appliance\n")},
		},
		Scripts: []roll.Script{{Origin: o("15"), Body: "set -e\necho \"post ran as $(id -u) in $(pwd)\" > /etc/ironbark-post\necho post script done\n"}},
		Attrs:   map[string]string{"kernel_args": "console=ttyS0,115200 panic=-1"},
	}
}
