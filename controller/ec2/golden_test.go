package ec2

import (
	"bytes"
	"encoding/xml"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n got: %s\nwant: %s", name, got, want)
	}
}

type goldenInstance struct {
	ID         string            `xml:"instanceId"`
	State      goldenState       `xml:"instanceState"`
	LaunchTime Time              `xml:"launchTime"`
	StopTime   Time              `xml:"stopTime"` // zero: left out
	Groups     List[goldenGroup] `xml:"groupSet"`
	Tags       List[tag]         `xml:"tagSet,omitempty"` // empty: left out
	EbsOpt     bool              `xml:"ebsOptimized"`
	AmiLaunch  int               `xml:"amiLaunchIndex"`
	KeyName    string            `xml:"keyName,omitempty"`
}

type goldenState struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

type goldenGroup struct {
	ID   string `xml:"groupId"`
	Name string `xml:"groupName"`
}

type goldenReservation struct {
	ID        string               `xml:"reservationId"`
	OwnerID   string               `xml:"ownerId"`
	Instances List[goldenInstance] `xml:"instancesSet"`
}

type goldenDescribeInstances struct {
	XMLName xml.Name `xml:"ignored"` // the wire layer names the root
	ResponseMeta
	Reservations List[goldenReservation] `xml:"reservationSet"`
	NextToken    string                  `xml:"nextToken,omitempty"`
}

func TestGoldenResponse(t *testing.T) {
	launch := time.Date(2026, 11, 24, 20, 45, 42, 123456789, time.FixedZone("x", 3600))
	resp := goldenDescribeInstances{Reservations: List[goldenReservation]{{
		ID: "r-0123456789abcdef0", OwnerID: testAcct,
		Instances: List[goldenInstance]{{
			ID: "i-0123456789abcdef0", State: goldenState{16, "running"}, LaunchTime: TimeOf(launch),
			Groups: List[goldenGroup]{{ID: "sg-1", Name: "default & <friends>"}},
		}, {
			ID: "i-0fedcba9876543210", State: goldenState{80, "stopped"}, LaunchTime: TimeOf(launch),
			Tags: List[tag]{{Key: "Name", Value: "web"}}, KeyName: "k",
		}},
	}}}
	b, err := MarshalResponse("DescribeInstances", "http://ec2.amazonaws.com/doc/2016-11-15/", "11111111-2222-4333-8444-555555555555", resp)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "describe-instances.xml", b)

	b, err = MarshalResponse("DescribeInstances", "http://ec2.amazonaws.com/doc/2014-10-01/", "id", &goldenDescribeInstances{})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "describe-instances-empty.xml", b)

	b, err = MarshalResponse("RebootInstances", "http://ec2.amazonaws.com/doc/2015-10-01/", "id", nil)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "nil-response.xml", b)
}

func TestGoldenError(t *testing.T) {
	golden(t, "error.xml", MarshalError(NotFound("InvalidInstanceID.NotFound", "i-<bad>"), "11111111-2222-4333-8444-555555555555"))
}
