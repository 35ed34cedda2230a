package scale

import (
	"context"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"ironbark/internal/store/storetest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// ironbarkBinary builds the ironbark command once per test binary.
func ironbarkBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := mkdirTemp()
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ironbark")
		buildOut, buildErr = exec.Command("go", "build", "-o", binPath, "ironbark/cmd/ironbark").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build ironbark: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

// The bench at its smallest size, as a test of correctness only: every
// instance launched (in the fill and the paced launches after it) reaches
// exactly one node once, every heartbeat of 100
// nodes is answered and every node is up, every member-list delta gives
// the list the controller named, on both stores. No timing is asserted.
func TestScaleSmall(t *testing.T) {
	bin := ironbarkBinary(t)
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			url := ""
			if engine == "postgres" {
				url = storetest.Postgres(t, nil).URL()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			r, err := Run(ctx, Options{Binary: bin, DataDir: t.TempDir(), DB: url, Size: Size{Nodes: 100, Instances: 2000},
				Accounts: 20, Steady: 12 * time.Second, DescribeCalls: 1, PacedCalls: 40, Progress: testWriter{t}})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Check(); err != nil {
				t.Fatal(err)
			}
			// Each account's instances share its default group, whose
			// rules name itself: every launch after an account's first
			// reaches its peers' nodes as a delta.
			if r.PeerArrivals == 0 {
				t.Error("no launched instance's address reached a peer's node as a member-list delta")
			}
			t.Logf("%d launched, %d reached a node once; %d heartbeats answered, %d nodes up; %.1f member addresses sent per launch",
				r.Launched, r.Received, r.Heartbeats, r.NodesUp, r.LaunchMembers)
		})
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
