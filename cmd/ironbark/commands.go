package main

// Adding a command is one entry in the table below and one function.
// The logic belongs in its domain package; the function only reads the
// flags, calls the domain and prints. Example, `ironbark widget add`:
//
//	// the table entry, next to the other widget commands:
//	{name: "widget add", args: "NAME [SIZE]", help: "add a widget", setup: widgetAdd},
//
//	// the function, in cmd_<domain>.go:
//	func widgetAdd(fs *flag.FlagSet) runFunc {
//		color := fs.String("color", "red", "its color")
//		return func(ctx context.Context, e *env) error {
//			db, err := e.openStore(ctx, widget.Migrations())
//			if err != nil {
//				return err
//			}
//			defer db.Close()
//			id, err := widget.Add(ctx, db, e.args[0], *color)
//			if err != nil {
//				return err
//			}
//			fmt.Fprintln(e.stdout, id) // data on stdout
//			e.say("widget %s added", e.args[0]) // messages on stderr
//			return nil
//		}
//	}
//
// What the table gives every command:
//   - name is "<noun> <verb>" with a singular noun; a verb "list" or "show"
//     gets --json. Print with printList(e, heads, rows): rows are a row
//     type with json tags (the stable --json shape scripts rely on) and a
//     cells() method (its table line); printJSON for one object.
//   - args is the positional usage; the count is checked before the
//     function runs ("NAME" required, "[NAME]" optional, "FILE..." many),
//     and flags may come before or after the arguments.
//   - --data-dir and --db, and e.openStore, unless noStore is set.
//   - -h/--help and `ironbark help NAME` print the usage, help and flags
//     and exit 0; a wrong command line exits 2 (return e.usagef(...) for
//     one the function finds); any other error exits 1.
//   - audit: true records each run in the audit log as "admin (cli)",
//     with its arguments and result: set it on every command that
//     changes the cloud's state (accounts, keys, quotas, nodes, ...).
//   - Data goes to e.stdout; messages (e.say), logs (e.logger) and
//     errors go to stderr.
// Tests call run(ctx, args, stdout, stderr) against a temp --data-dir
// (see cli_test.go).

// commands is the command table, grouped by domain.
func commands() []command {
	return []command{
		// The controller and its accounts (cmd_controller.go, cmd_key.go, cmd_user.go).
		{name: "audit", help: "show the audit log: every mutating EC2 call and admin command (--since, --account, --action; --json for JSON lines, --after SEQ to resume shipping)", setup: auditShow},
		{name: "audit prune", audit: true, help: "delete audit entries older than --before (controller.json's auditRetentionDays does it every hour)", setup: auditPrune},
		{name: "report usage", help: "instance-, core-, address- and image GiB-hours of a period (--since, --until) by account, user, type, zone or node (--by; --format table|csv|json)", setup: reportUsage},
		{name: "controller", help: "run the cloud controller: EC2 API on --listen, node API on --node-listen", setup: controllerRun},
		{name: "account create", audit: true, args: "NAME", help: "make an account and its credentials; prints the credentials dir", setup: accountCreate},
		{name: "account disable", audit: true, args: "NAME", help: "refuse every call signed by the account's keys, at once (its instances keep running)", setup: accountSetDisabled(true)},
		{name: "account enable", audit: true, args: "NAME", help: "let a disabled account's keys sign calls again", setup: accountSetDisabled(false)},
		{name: "user create", audit: true, args: "ACCOUNT USER", help: "make a user in an account (--admin: an account admin) with its access key and credentials; prints the credentials dir", setup: userCreate},
		{name: "user list", args: "ACCOUNT", help: "list an account's users with their role and keys", setup: userList},
		{name: "user delete", audit: true, args: "ACCOUNT USER", help: "delete a user and its access keys (refused while a key is active, unless --force)", setup: userDelete},
		{name: "key create", audit: true, args: "ACCOUNT", help: "make another access key (at most 2 for the account, and 2 for each user with --user) and its credentials; prints the credentials dir", setup: keyCreate},
		{name: "key list", args: "ACCOUNT", help: "list an account's access keys, its own and its users', with status and last use", setup: keyList},
		{name: "key deactivate", audit: true, args: "ACCOUNT KEYID", help: "refuse every call signed by the key, at once", setup: keySetActive(false)},
		{name: "key activate", audit: true, args: "ACCOUNT KEYID", help: "let a deactivated key sign calls again", setup: keySetActive(true)},
		{name: "key delete", audit: true, args: "ACCOUNT KEYID", help: "delete an access key and its credentials dir for good", setup: keyDelete},
		{name: "quota set", audit: true, args: "ACCOUNT", help: "limit what an account may hold (--instances, --cores, --memory-mib, --addresses, --images, --key-pairs, --security-groups: a number or 'unlimited')", setup: quotaSet},
		{name: "quota list", args: "[ACCOUNT]", help: "show an account's quotas (every account's without ACCOUNT) and what it holds", setup: quotaList},
		{name: "address pool add", audit: true, args: "CIDR", help: "add public addresses (a CIDR or a.b.c.d-a.b.c.e) for AllocateAddress; a running controller uses them at once", setup: addressPoolAdd},
		{name: "address pool list", help: "list the public address pool's blocks with how many addresses are allocated", setup: addressPoolList},
		{name: "address pool remove", audit: true, args: "CIDR", help: "remove a block from the public address pool (refused while an account holds one of its addresses)", setup: addressPoolRemove},

		// Clusters and nodes (cmd_node.go).
		{name: "cluster add", audit: true, args: "NAME", help: "add a cluster (availability zone) with its networking (--network-mode, --instance-subnet, --public-ips)", setup: clusterAdd},
		{name: "cluster list", help: "list clusters with their policy, networking and nodes", setup: clusterList},
		{name: "cluster set", audit: true, args: "NAME", help: "change a cluster's networking: --network-mode, --instance-subnet, --public-ips on|off", setup: clusterSet},
		{name: "cluster set-policy", audit: true, args: "NAME POLICY", help: "change a cluster's scheduling policy", setup: clusterSetPolicy},
		{name: "cluster set-limit", audit: true, args: "NAME", help: "bound what one node of the cluster may offer (--max-cores, --max-memory-mib, --max-disk-gib)", setup: clusterSetLimit},
		{name: "node token", help: "print a one-time enrollment token for ironbark-node (needs --cluster)", setup: nodeToken},
		{name: "node list", help: "list enrolled nodes with capacity and last heartbeat", setup: nodeList},
		{name: "node remove", audit: true, args: "NODE-ID", help: "forget a node and revoke its certificate; refused while it holds instances unless --force, which terminates them", setup: nodeRemove},
		{name: "node drain", audit: true, args: "NODE-ID", help: "place no new instances on a node (its instances stay)", setup: nodeDrain(true)},
		{name: "node undrain", audit: true, args: "NODE-ID", help: "put a drained node back in service", setup: nodeDrain(false)},
		{name: "node approve", audit: true, args: "NODE-ID", help: "accept what a new or changed node declares, within its cluster's limit", setup: nodeApprove},

		// Images (cmd_image.go).
		{name: "image build", noStore: true, help: "build a machine image from a directory or tar (needs --from, --out)", setup: imageBuild},
		{name: "image import", args: "FILE", help: "store and register a raw/qcow2 image, kernel or ramdisk; prints its id", setup: imageImport},
		{name: "image list", help: "list registered images and whether their blobs are stored", setup: imageList},
		{name: "iso build", noStore: true, help: "build the frontend ISO (BIOS+UEFI, isohybrid) (needs --out)", setup: isoBuild},

		// PXE provisioning and hosts (cmd_pxe.go).
		{name: "pxe", help: "serve DHCP, TFTP and HTTP boot on an interface (needs --interface)", setup: pxeServe},
		{name: "pxe setup", help: "install the installer kernel and initramfs (needs --kernel, --modules, --installer)", setup: pxeSetup},
		{name: "pxe image", args: "APPLIANCE FILE", help: "set the disk image an appliance installs", setup: pxeImage},
		{name: "discover", help: "name PXE-booting nodes as they appear, Rocks' insert-ethers (needs --cluster)", setup: discover},
		{name: "host list", help: "list hosts with boot action and install state", setup: hostList},
		{name: "host add", args: "[NAME]", help: "add a host by hand (needs --mac); NAME defaults to <appliance>-<rack>-<rank>", setup: hostAdd},
		{name: "host remove", args: "HOST", help: "remove a host and its DHCP lease", setup: hostRemove},
		{name: "host set-boot", args: "HOST install|os|rescue", help: "set a host's next boot action", setup: hostSetBoot},

		// Rolls, appliances and attributes (cmd_roll.go).
		{name: "roll create", args: "DIR", noStore: true, help: "archive the roll in DIR, signed with --sign KEY (needs --out)", setup: rollCreate},
		{name: "roll key create", args: "FILE", noStore: true, help: "make an ed25519 roll signing key FILE and FILE.pub; prints its id", setup: rollKeyCreate},
		{name: "roll key trust", args: "PUBFILE", help: "trust rolls signed by the key in PUBFILE; prints its id", setup: rollKeyTrust},
		{name: "roll add", args: "FILE", help: "verify a roll archive's signature and add it (--insecure-trust for an unsigned one)", setup: rollAdd},
		{name: "roll list", help: "list the built-in and added rolls and whether they are enabled", setup: rollList},
		{name: "roll enable", args: "NAME", help: "enable a roll: its nodes and edges join the graph", setup: rollSetEnabled(true)},
		{name: "roll disable", args: "NAME", help: "disable a roll", setup: rollSetEnabled(false)},
		{name: "roll remove", args: "NAME", help: "remove an added roll and its archive", setup: rollRemove},
		{name: "appliance list", help: "list the appliances the enabled rolls and the site define", setup: applianceList},
		{name: "appliance add", args: "NAME", help: "add a site appliance whose walk starts at --node", setup: applianceAdd},
		{name: "appliance graph", args: "NAME", help: "print an appliance's graph in DOT (--pruned for one host's, --host H)", setup: applianceGraph},
		{name: "appliance profile", args: "NAME", help: "print an appliance's ordered profile: nodes, packages, files, scripts, with their rolls", setup: applianceProfile},
		{name: "appliance build", args: "NAME", help: "build an appliance's disk image from its rolls' profile and make it what the appliance installs", setup: applianceBuild},
		{name: "attr set", args: "NAME VALUE", help: "set an attribute: global, or with --host/--rack/--appliance/--os", setup: attrSet},
		{name: "attr list", help: "list attributes; with --host or --appliance the whole chain, each with its source (G/O/A/R/H/I)", setup: attrList},
		{name: "attr remove", args: "NAME", help: "remove an attribute at its scope", setup: attrRemove},

		// The operator's dashboard (cmd_tui.go).
		{name: "tui", help: "the operator's live dashboard: clusters, nodes, hosts, instances, images, events; add a cluster, discover, reinstall, drain", setup: dashboard},

		// The frontend installer (cmd_install.go).
		{name: "install", noStore: true, help: "install this machine as the frontend: the installer screens, or unattended with --answers FILE", setup: frontendInstall},
		{name: "frontend setup", help: "make this system what DATA/frontend.json says (network, host name, time, root's password and SSH key); the installed frontend runs it at every boot", setup: frontendSetup},
	}
}
