package controller

import (
	"ironbark/controller/usage"
	"ironbark/internal/store"
)

// Migrations is the EC2 side's schema, applied in order at start. Every
// table that belongs to an account carries account_id and an index that
// starts with it, so one account's Describe calls stay flat however many
// resources other accounts hold.
func Migrations() []store.Migration {
	return []store.Migration{
		{ID: "controller/0001-accounts", SQL: `
CREATE TABLE accounts (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	admin      INTEGER NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL
);
CREATE TABLE access_keys (
	access_key TEXT PRIMARY KEY,
	secret     TEXT NOT NULL,
	account_id TEXT NOT NULL REFERENCES accounts(id),
	active     INTEGER NOT NULL DEFAULT 1,
	created_at BIGINT NOT NULL
);
CREATE INDEX access_keys_account ON access_keys(account_id);
`},
		{ID: "controller/0002-images", SQL: `
CREATE TABLE images (
	id               TEXT PRIMARY KEY,
	account_id       TEXT NOT NULL,
	name             TEXT NOT NULL,
	description      TEXT NOT NULL DEFAULT '',
	kind             TEXT NOT NULL,
	architecture     TEXT NOT NULL,
	location         TEXT NOT NULL DEFAULT '',
	digest           TEXT NOT NULL DEFAULT '',
	size             BIGINT NOT NULL DEFAULT 0,
	format           TEXT NOT NULL DEFAULT 'raw',
	root_device_type TEXT NOT NULL DEFAULT 'instance-store',
	root_device_name TEXT NOT NULL DEFAULT '/dev/sda1',
	kernel_id        TEXT NOT NULL DEFAULT '',
	ramdisk_id       TEXT NOT NULL DEFAULT '',
	virtualization   TEXT NOT NULL DEFAULT 'hvm',
	public           INTEGER NOT NULL DEFAULT 0,
	state            TEXT NOT NULL DEFAULT 'available',
	created_at       BIGINT NOT NULL,
	UNIQUE (account_id, name)
);
CREATE INDEX images_public ON images(public);
CREATE TABLE launch_permissions (
	image_id   TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
	account_id TEXT NOT NULL,
	PRIMARY KEY (image_id, account_id)
);
CREATE INDEX launch_permissions_account ON launch_permissions(account_id);
`},
		{ID: "controller/0003-ec2-resources", SQL: `
CREATE TABLE key_pairs (
	account_id  TEXT NOT NULL,
	name        TEXT NOT NULL,
	id          TEXT NOT NULL UNIQUE,
	key_type    TEXT NOT NULL,
	fingerprint TEXT NOT NULL,
	public_key  TEXT NOT NULL,
	created_at  BIGINT NOT NULL,
	PRIMARY KEY (account_id, name)
);
CREATE TABLE security_groups (
	id          TEXT PRIMARY KEY,
	account_id  TEXT NOT NULL,
	name        TEXT NOT NULL,
	description TEXT NOT NULL,
	created_at  BIGINT NOT NULL,
	UNIQUE (account_id, name)
);
CREATE TABLE security_group_rules (
	id              TEXT PRIMARY KEY,
	group_id        TEXT NOT NULL REFERENCES security_groups(id) ON DELETE CASCADE,
	egress          INTEGER NOT NULL,
	protocol        TEXT NOT NULL,
	from_port       BIGINT NOT NULL,
	to_port         BIGINT NOT NULL,
	cidr            TEXT NOT NULL DEFAULT '',
	source_group_id TEXT NOT NULL DEFAULT '',
	source_owner    TEXT NOT NULL DEFAULT '',
	description     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX security_group_rules_group ON security_group_rules(group_id);
CREATE TABLE reservations (
	id         TEXT PRIMARY KEY,
	account_id TEXT NOT NULL,
	groups     TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE TABLE instances (
	id             TEXT PRIMARY KEY,
	account_id     TEXT NOT NULL,
	reservation_id TEXT NOT NULL REFERENCES reservations(id),
	launch_index   BIGINT NOT NULL,
	image_id       TEXT NOT NULL,
	kernel_id      TEXT NOT NULL DEFAULT '',
	ramdisk_id     TEXT NOT NULL DEFAULT '',
	vm_type        TEXT NOT NULL,
	key_name       TEXT NOT NULL DEFAULT '',
	zone           TEXT NOT NULL,
	node_id        TEXT NOT NULL,
	mac            TEXT NOT NULL UNIQUE,
	private_ip     TEXT NOT NULL DEFAULT '',
	public_ip      TEXT NOT NULL DEFAULT '',
	state          TEXT NOT NULL,
	desired        TEXT NOT NULL,
	reason         TEXT NOT NULL DEFAULT '',
	client_token   TEXT NOT NULL DEFAULT '',
	user_data      TEXT NOT NULL DEFAULT '',
	reboot_serial  BIGINT NOT NULL DEFAULT 0,
	console        TEXT NOT NULL DEFAULT '',
	console_at     BIGINT NOT NULL DEFAULT 0,
	launch_time    BIGINT NOT NULL,
	ended_at       BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX instances_account ON instances(account_id, id);
CREATE INDEX instances_node ON instances(node_id);
CREATE TABLE client_tokens (
	account_id     TEXT NOT NULL,
	token          TEXT NOT NULL,
	reservation_id TEXT NOT NULL,
	created_at     BIGINT NOT NULL,
	PRIMARY KEY (account_id, token)
);
CREATE TABLE addresses (
	public_ip      TEXT PRIMARY KEY,
	allocation_id  TEXT NOT NULL UNIQUE,
	account_id     TEXT NOT NULL,
	instance_id    TEXT NOT NULL DEFAULT '',
	association_id TEXT NOT NULL DEFAULT '',
	created_at     BIGINT NOT NULL
);
CREATE INDEX addresses_account ON addresses(account_id);
CREATE TABLE tags (
	resource_id   TEXT NOT NULL,
	key           TEXT NOT NULL,
	value         TEXT NOT NULL,
	account_id    TEXT NOT NULL,
	resource_type TEXT NOT NULL,
	PRIMARY KEY (resource_id, key)
);
CREATE INDEX tags_account ON tags(account_id);
`},
		// What a node needs to run an instance is copied at launch, so
		// deregistering its image or deleting its key pair later does not
		// strand it; the client token remembers the request it answered.
		{ID: "controller/0004-instance-spec", SQL: `
ALTER TABLE instances ADD COLUMN artifacts TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN public_key TEXT NOT NULL DEFAULT '';
ALTER TABLE client_tokens ADD COLUMN params TEXT NOT NULL DEFAULT '';
`},
		{ID: "controller/0005-secrets", SQL: `
CREATE TABLE controller_secrets (
	name  TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
`},
		// Usage (what the scheduler reads on every placement) groups live
		// instances by node and type: a covering index spares it the rows.
		{ID: "controller/0006-usage-index", SQL: `
CREATE INDEX instances_usage ON instances(node_id, vm_type, state);
`},
		// Pages of instances are cut in bytewise id order; PostgreSQL
		// needs an index in that collation to walk them.
		{ID: "controller/0007-instance-page-index", SQL: `SELECT 1`, Postgres: `
CREATE INDEX instances_account_c ON instances(account_id, id COLLATE "C");
CREATE INDEX instances_id_c ON instances(id COLLATE "C");
`},
		// Usage is read on every placement: keep it as counters updated
		// in the transactions that launch and end instances, rather than
		// counting every live instance each time.
		{ID: "controller/0008-node-usage", SQL: `
CREATE TABLE node_usage (
	node_id   TEXT NOT NULL,
	vm_type   TEXT NOT NULL,
	instances BIGINT NOT NULL,
	PRIMARY KEY (node_id, vm_type)
);
INSERT INTO node_usage (node_id, vm_type, instances)
	SELECT node_id, vm_type, COUNT(*) FROM instances WHERE state <> 'terminated' GROUP BY node_id, vm_type;
DROP INDEX instances_usage;
`},
		// Each live instance holds its own private address; a terminated
		// one's goes back to the pool (it leaves this partial index).
		{ID: "controller/0009-private-ip-unique", SQL: `
CREATE UNIQUE INDEX instances_private_ip ON instances(private_ip) WHERE state <> 'terminated' AND private_ip <> '';
`},
		// Instance attributes that automation tools read and set
		// (DescribeInstanceAttribute, ModifyInstanceAttribute): termination
		// and stop protection, and what a shutdown from inside does.
		{ID: "controller/0010-instance-attributes", SQL: `
ALTER TABLE instances ADD COLUMN disable_api_termination INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN disable_api_stop INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN shutdown_behavior TEXT NOT NULL DEFAULT 'stop';
`},
		// The public address pool the administrator manages with
		// `ironbark address pool`, beside controller.json's publicAddresses.
		{ID: "controller/0011-public-address-pool", SQL: `
CREATE TABLE public_address_pool (
	block      TEXT PRIMARY KEY,
	created_at BIGINT NOT NULL
);
`},
		// A public address given at launch (AssociatePublicIpAddress) is
		// the instance's: not listed by DescribeAddresses, returned to
		// the pool when the instance ends.
		{ID: "controller/0012-launch-public-address", SQL: `
ALTER TABLE addresses ADD COLUMN auto INTEGER NOT NULL DEFAULT 0;
`},
		// Per-account quotas (quotas.go).
		quotaMigration(),
		// Access keys carry when they last signed a call (written at most
		// once a minute per key), and an account can be disabled: its
		// keys then sign nothing, its instances keep running.
		{ID: "controller/0014-access-key-state", SQL: `
ALTER TABLE access_keys ADD COLUMN last_used BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
`},
		quotaIndexMigration(),
		// The audit log of mutating calls and admin commands (audit.go).
		auditMigration(),
		// Users inside an account (users.go).
		usersMigration(),
		// The usage record (controller/usage).
		usage.Migration(),
		// MANAGED mode's network per security group (groupnet.go).
		groupNetMigration(),
		// Security group membership changes, logged by triggers (memberlog.go).
		memberChangesMigration(),
		// A reservation's instances are read by a retried ClientToken
		// launch and by reservation-id filters; without this index each
		// such read walked every instance the cloud had ever run.
		{ID: "controller/0021-instance-reservation-index", SQL: `
CREATE INDEX instances_reservation ON instances(reservation_id);
`},
		// Counts launches, in their transactions: placement trusts its
		// cached usage while no other controller has launched
		// (usagecache.go).
		{ID: "controller/0022-launch-seq", SQL: `
CREATE TABLE launch_seq (seq BIGINT NOT NULL);
INSERT INTO launch_seq (seq) VALUES (0);
`},
	}
}
