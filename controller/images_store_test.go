package controller

import (
	"context"
	"errors"
	"strings"
	"testing"

	"ironbark/controller/ec2"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

func TestRegisterStoredImage(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		digest := "sha256:" + strings.Repeat("ab", 32)
		kernel, err := RegisterStoredImage(ctx, db, ImageRecord{Name: "vmlinuz-6.1", Kind: KindKernel, Digest: digest, Size: 10})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(kernel, "eki-") {
			t.Fatalf("kernel id %q", kernel)
		}
		emi, err := RegisterStoredImage(ctx, db, ImageRecord{Owner: AdminAccount, Name: "debian-12", Digest: digest,
			Size: 1 << 20, KernelID: kernel, Public: true})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(emi, "emi-") {
			t.Fatalf("machine id %q", emi)
		}
		_, err = RegisterStoredImage(ctx, db, ImageRecord{Name: "debian-12", Digest: digest})
		var apiErr *ec2.Error
		if !errors.As(err, &apiErr) || apiErr.Code != "InvalidAMIName.Duplicate" {
			t.Fatalf("duplicate name: %v", err)
		}
		_, err = RegisterStoredImage(ctx, db, ImageRecord{Name: "bad", Digest: "sha256:zz"})
		if err == nil {
			t.Fatal("bad digest accepted")
		}
		var n int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM images`).Scan(&n); err != nil || n != 2 {
			t.Fatalf("images: %d %v", n, err)
		}
	})
}
