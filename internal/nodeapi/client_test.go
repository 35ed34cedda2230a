package nodeapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// InstancesStream against controllers that answer in each way it can
// meet: a stream of lines (deltas applied to what the lines before gave),
// one answer as a controller that does not stream gives, and answers it
// must not take as a desired state (an empty stream ended at once, a JSON
// error with a 200, a truncated line).
func TestInstancesStream(t *testing.T) {
	a := []string{"10.0.0.1", "10.0.0.2"}
	b := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}
	first := fmt.Sprintf(`{"etag":"e1","instances":[{"instanceId":"i-1","version":"v1"}],"securityGroups":[{"id":"sg-1","members":["10.0.0.1","10.0.0.2"],"membersVersion":%q}]}`,
		MembersVersion(a))
	second := fmt.Sprintf(`{"etag":"e2","kept":["i-1"],"instances":[{"instanceId":"i-2","version":"v2"}],"securityGroups":[{"id":"sg-1","membersVersion":%q,"membersDelta":{"base":%q,"added":["10.0.0.3"]}}]}`,
		MembersVersion(b), MembersVersion(a))
	for _, tc := range []struct {
		name    string
		body    string
		wantErr string // "" for none
		etags   []string
	}{
		{"two lines", first + "\n" + second + "\n", "", []string{"e1", "e2"}},
		{"a controller that does not stream", first + "\n", "", []string{"e1"}},
		{"ended at once without a line", "", "without an answer", nil},
		{"a JSON error with a 200", `{"error":"no"}` + "\n", "without an etag", nil},
		{"a truncated line", first + "\n" + second[:40], "decode answer", []string{"e1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var query string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				query = r.URL.RawQuery
				w.Header().Set("Content-Type", StreamContentType)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c := NewClient(srv.URL, nil)
			defer c.Close()
			var held Held
			var etags []string
			err := c.InstancesStream(context.Background(), "", 20*time.Second, &held, func(d Desired) error {
				etags = append(etags, d.ETag)
				if d.ETag == "e2" {
					if len(d.Instances) != 2 || d.Instances[0].InstanceID != "i-1" {
						t.Errorf("second line's instances %+v; want i-1 (kept) and i-2", d.Instances)
					}
					if got := strings.Join(d.SecurityGroups[0].Members, ","); got != strings.Join(b, ",") {
						t.Errorf("second line's members %s; want %v", got, b)
					}
				}
				return nil
			})
			if !strings.Contains(query, QueryStream+"=1") {
				t.Errorf("query %q does not ask for a stream", query)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("err %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err %v; want one saying %q", err, tc.wantErr)
			}
			if strings.Join(etags, ",") != strings.Join(tc.etags, ",") {
				t.Fatalf("answers %v; want %v", etags, tc.etags)
			}
		})
	}
}
