package main

import (
	"context"
	"flag"

	"ironbark/controller"
	"ironbark/internal/store"
)

// storeFlags are the data dir and store flags every frontend command takes.
type storeFlags struct {
	dataDir, db string
}

func (f *storeFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&f.dataDir, "data-dir", defaultDataDir, "frontend data directory")
	fs.StringVar(&f.db, "db", "", "store URL: postgres://... for PostgreSQL (default: the one the controller remembered in the data dir, else SQLite DATA/ironbark.db)")
}

// openStore opens the store the data dir uses (controller.StoreURL) and
// applies the given migrations.
func (f *storeFlags) openStore(ctx context.Context, ms []store.Migration) (*store.DB, error) {
	url, err := controller.StoreURL(f.dataDir, f.db)
	if err != nil {
		return nil, err
	}
	db, err := store.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, ms); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// open opens the store with the controller's schema.
func (f *storeFlags) open(ctx context.Context) (*store.DB, error) {
	return f.openStore(ctx, controller.Migrations())
}
