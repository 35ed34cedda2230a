package pxe

import "ironbark/internal/store"

// Migrations returns the pxe domain's schema, applied in order at start.
func Migrations() []store.Migration {
	return []store.Migration{
		{ID: "pxe/0001-hosts", SQL: `
CREATE TABLE pxe_hosts (
	name             TEXT PRIMARY KEY,
	mac              TEXT NOT NULL UNIQUE,
	ip               TEXT NOT NULL DEFAULT '',
	appliance        TEXT NOT NULL,
	rack             BIGINT NOT NULL,
	rank             BIGINT NOT NULL,
	cluster          TEXT NOT NULL DEFAULT '',
	boot_action      TEXT NOT NULL,
	install_state    TEXT NOT NULL DEFAULT '',
	install_progress BIGINT NOT NULL DEFAULT 0,
	install_step     TEXT NOT NULL DEFAULT '',
	install_error    TEXT NOT NULL DEFAULT '',
	install_attempt  TEXT NOT NULL DEFAULT '',
	created_at       BIGINT NOT NULL,
	updated_at       BIGINT NOT NULL,
	UNIQUE (appliance, rack, rank)
);
CREATE UNIQUE INDEX pxe_hosts_ip ON pxe_hosts (ip) WHERE ip <> '';
CREATE TABLE pxe_discovery (
	id           BIGINT PRIMARY KEY CHECK (id = 1),
	appliance    TEXT NOT NULL,
	cluster      TEXT NOT NULL,
	rack         BIGINT NOT NULL,
	pid          BIGINT NOT NULL,
	hostname     TEXT NOT NULL,
	started_at   BIGINT NOT NULL,
	heartbeat_at BIGINT NOT NULL
);`},
		{ID: "pxe/0002-appliance-images", SQL: `
CREATE TABLE pxe_appliances (
	appliance  TEXT PRIMARY KEY,
	digest     TEXT NOT NULL,
	size       BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);`},
		// A discovery session admits at most max_hosts new hosts and
		// counts the MACs it refused.
		{ID: "pxe/0003-discovery-cap", SQL: `
ALTER TABLE pxe_discovery ADD COLUMN max_hosts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pxe_discovery ADD COLUMN admitted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pxe_discovery ADD COLUMN refused BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pxe_discovery ADD COLUMN last_refused TEXT NOT NULL DEFAULT '';`},
		// A host remembers the session that admitted it, so a session
		// lists what it discovered and not the hosts added by hand
		// while it ran.
		{ID: "pxe/0004-discovered-by", SQL: `
ALTER TABLE pxe_discovery ADD COLUMN session_id TEXT NOT NULL DEFAULT '';
ALTER TABLE pxe_hosts ADD COLUMN discovered_by TEXT NOT NULL DEFAULT '';
CREATE INDEX pxe_hosts_discovered_by ON pxe_hosts (discovered_by) WHERE discovered_by <> '';`},
	}
}
