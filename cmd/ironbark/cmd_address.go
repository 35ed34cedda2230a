package main

import (
	"context"
	"flag"
	"strconv"

	"ironbark/controller"
)

// The public address pool (controller/addresspool.go): what
// AllocateAddress hands out.

func addressPoolAdd(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		db, err := e.openStore(ctx, controller.Migrations())
		if err != nil {
			return err
		}
		if err := controller.AddAddressBlock(ctx, db, e.args[0]); err != nil {
			return err
		}
		e.say("address pool: %s added", e.args[0])
		return nil
	}
}

func addressPoolRemove(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		db, err := e.openStore(ctx, controller.Migrations())
		if err != nil {
			return err
		}
		if err := controller.RemoveAddressBlock(ctx, db, e.args[0]); err != nil {
			return err
		}
		e.say("address pool: %s removed", e.args[0])
		return nil
	}
}

type addressBlockRow controller.AddressBlock

func (r addressBlockRow) cells() []string {
	return []string{r.Block, strconv.Itoa(r.Addresses), strconv.Itoa(r.Allocated)}
}

func addressPoolList(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		db, err := e.openStore(ctx, controller.Migrations())
		if err != nil {
			return err
		}
		s, err := controller.LoadSettings(e.dataDir)
		if err != nil {
			return err
		}
		blocks, err := controller.ListAddressBlocks(ctx, db, s.PublicAddresses)
		if err != nil {
			return err
		}
		rows := make([]addressBlockRow, len(blocks))
		for i, b := range blocks {
			rows[i] = addressBlockRow(b)
		}
		return printList(e, []string{"BLOCK", "ADDRESSES", "ALLOCATED"}, rows)
	}
}
