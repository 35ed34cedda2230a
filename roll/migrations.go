package roll

import "ironbark/internal/store"

// Migrations are the roll domain's tables: the rolls added to the
// frontend, the appliances the site added, and attributes.
func Migrations() []store.Migration {
	return []store.Migration{
		{ID: "roll/0001-rolls", SQL: `
CREATE TABLE rolls (
	name     TEXT PRIMARY KEY,
	version  TEXT NOT NULL,
	release  TEXT NOT NULL,
	arch     TEXT NOT NULL,
	os       TEXT NOT NULL,
	summary  TEXT NOT NULL,
	file     TEXT NOT NULL,
	digest   TEXT NOT NULL,
	key_id   TEXT NOT NULL,
	enabled  INTEGER NOT NULL,
	added_at BIGINT NOT NULL
);`},
		{ID: "roll/0002-builtin-state", SQL: `
CREATE TABLE roll_builtin_state (
	name    TEXT PRIMARY KEY,
	enabled INTEGER NOT NULL
);`},
		{ID: "roll/0003-appliances", SQL: `
CREATE TABLE roll_appliances (
	name     TEXT PRIMARY KEY,
	node     TEXT NOT NULL,
	summary  TEXT NOT NULL,
	added_at BIGINT NOT NULL
);`},
		{ID: "roll/0004-attributes", SQL: `
CREATE TABLE roll_attributes (
	scope  TEXT NOT NULL,
	target TEXT NOT NULL,
	name   TEXT NOT NULL,
	value  TEXT NOT NULL,
	PRIMARY KEY (scope, target, name)
);`},
	}
}
