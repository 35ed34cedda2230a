package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	tea "github.com/charmbracelet/bubbletea"

	"ironbark/controller"
	"ironbark/operator"
	"ironbark/pxe"
	"ironbark/tui"
)

// dashboard is `ironbark tui`: the operator's live dashboard on this
// frontend's data dir, or with --endpoint on a remote frontend over its
// EC2 endpoint with the administrator's credentials.
func dashboard(fs *flag.FlagSet) runFunc {
	endpoint := fs.String("endpoint", "", "a remote frontend's EC2 URL (https://FRONTEND:8773/); \"-\": the one in --credentials' eucarc")
	creds := fs.String("credentials", "", "with --endpoint: the administrator's credentials dir (the frontend's DATA/credentials/admin: credentials, eucarc, ca.pem)")
	return func(ctx context.Context, e *env) error {
		var src tui.DashboardSource
		remote := *endpoint != ""
		if remote {
			if *creds == "" {
				return e.usagef("tui: --endpoint needs --credentials DIR (the frontend's credentials/admin)")
			}
			c, err := operator.LoadCredentials(*creds)
			if err != nil {
				return err
			}
			url := *endpoint
			if url == "-" {
				url = ""
			}
			r, err := operator.NewRemote(url, c)
			if err != nil {
				return err
			}
			// Fail now, not inside the screen, when the frontend refuses.
			if _, err := r.Snapshot(ctx); err != nil {
				return fmt.Errorf("tui: %s: %w", r.Endpoint, err)
			}
			src = r
		} else {
			l, err := openLocalSource(ctx, e)
			if err != nil {
				return err
			}
			src = l
		}
		for {
			d := &tui.Dashboard{Source: src}
			if _, err := tea.NewProgram(d, tea.WithContext(ctx), tea.WithAltScreen(), tea.WithOutput(os.Stdout)).Run(); err != nil {
				if errors.Is(err, tea.ErrProgramKilled) || ctx.Err() != nil {
					return nil
				}
				return err
			}
			if d.Discover == "" {
				return nil
			}
			if remote {
				e.say("discovery runs on the frontend, beside its PXE service: run `ironbark discover --cluster %s` there", d.Discover)
				continue
			}
			if err := runDiscover(ctx, e, discoverFlags{appliance: "compute", cluster: d.Discover, max: pxe.DefaultMaxHosts}); err != nil {
				e.say("discover: %v", err)
			}
		}
	}
}

// openLocalSource is the dashboard's source on this frontend's store.
func openLocalSource(ctx context.Context, e *env) (*operator.Local, error) {
	db, err := e.openStore(ctx, append(controller.Migrations(), pxe.Migrations()...))
	if err != nil {
		return nil, err
	}
	cat, blobs, err := e.openImages(ctx)
	if err != nil {
		return nil, err
	}
	settings, err := controller.LoadSettings(e.dataDir)
	if err != nil {
		return nil, err
	}
	vts := settings.VMTypes
	if len(vts) == 0 {
		vts = controller.DefaultVMTypes()
	}
	return operator.NewLocal(ctx, db, cat, blobs, vts)
}
