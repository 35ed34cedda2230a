package bootapi

import "ironbark/internal/nodeapi"

// Paths on the HTTP boot server, relative to its base URL.
const (
	// PathScript is followed by the node's MAC: /boot/script/52:54:00:..
	PathScript = "/boot/script/"
	// PathKernel and PathInitramfs serve the installer's kernel and initramfs.
	PathKernel    = "/boot/vmlinuz"
	PathInitramfs = "/boot/installer.img"
	// PathProfile is followed by the host name: /install/compute-0-0/profile
	PathInstall = "/install/"
	// PathImages is followed by sha256/<hex digest> of an appliance image.
	PathImages = "/images/"
)

// Kernel command-line keys the boot script passes to the installer.
const (
	ArgURL     = "ironbark.url"     // base URL of the HTTP boot server
	ArgHost    = "ironbark.host"    // host name, e.g. compute-0-0
	ArgMAC     = "ironbark.mac"     // MAC of the NIC to bring up
	ArgIP      = "ironbark.ip"      // address iPXE got by DHCP
	ArgNetmask = "ironbark.netmask" // its netmask
	ArgGateway = "ironbark.gw"      // optional gateway
	ArgAttempt = "ironbark.attempt" // install attempt id, echoed in reports
	ArgMode    = "ironbark.mode"    // install | rescue
	ArgOnFail  = "ironbark.onfail"  // reboot | halt | poweroff
	ArgDisk    = "ironbark.disk"    // target disk, default: first virtio/sata disk
	// ArgFinish is how the installer starts the installed system after a
	// good install: reboot (through the firmware, PXE and the disk's boot
	// loader) or kexec (straight into the kernel the disk's boot loader
	// would load; a disk it cannot read that way is rebooted).
	ArgFinish = "ironbark.finish"
)

// Finish actions after a good install (ArgFinish).
const (
	FinishReboot = "reboot"
	FinishKexec  = "kexec"
)

// Image is a whole-disk appliance image the installer writes to the
// target disk.
type Image struct {
	URL    string `json:"url"`    // absolute URL, Range supported
	Digest string `json:"digest"` // sha256:<hex>
	Size   int64  `json:"size"`
}

// File is one file the installer writes into the installed system's
// boot partition (the node identity).
type File struct {
	Path    string `json:"path"` // relative, e.g. ironbark/node.json
	Mode    uint32 `json:"mode"`
	Content string `json:"content"`
}

// Identity is what the installed node needs to join the cloud: the one
// node identity format, defined with the node API (internal/nodeapi) that
// ironbark-node reads it with.
type Identity = nodeapi.Identity

// Profile is the install profile of one host, served as JSON.
type Profile struct {
	Hostname string   `json:"hostname"`
	Attempt  string   `json:"attempt"`
	Image    Image    `json:"image"`
	Identity Identity `json:"identity"`
	Files    []File   `json:"files"`
	// AuthorizedKeys are the OpenSSH public keys (authorized_keys lines)
	// root accepts on the installed system: the host's
	// ssh_authorized_keys attribute as the frontend resolves it at this
	// install. The installer merges them into the installed root's
	// /root/.ssh/authorized_keys (keys the image carries stay); empty
	// leaves the image's file alone.
	AuthorizedKeys string `json:"authorizedKeys,omitempty"`
}

// Install states reported by the installer.
const (
	StateRunning = "running"
	StateDone    = "done"
	StateFailed  = "failed"
)

// Progress is one report from the installer, POSTed as JSON to
// /install/<host>/progress.
type Progress struct {
	Attempt string `json:"attempt"`
	State   string `json:"state"`           // running | done | failed
	Percent int    `json:"percent"`         // 0-100
	Step    string `json:"step,omitempty"`  // human-readable: "writing image"
	Error   string `json:"error,omitempty"` // why it failed
}
