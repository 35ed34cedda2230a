package appliance

import (
	"embed"
	"fmt"
	"io/fs"

	"ironbark/roll"
)

// LabMarker is what the lab appliance prints on its serial console once
// its own root filesystem runs /etc/init.d/rcS.
const LabMarker = "IRONBARK-LAB-APPLIANCE-UP"

//go:embed labroll
var labRoll embed.FS

// LabRoll is the tiny lab roll (labroll/): one appliance, lab, of os
// busybox (no apt: the host's busybox-static and a given kernel), for
// tests that need a real appliance image in seconds rather than minutes.
// Its node uses every kind of profile item: a file with mode and owner,
// an appended line, a post script whose result the booted system prints.
func LabRoll() (*roll.Roll, error) {
	sub, err := fs.Sub(labRoll, "labroll")
	if err != nil {
		return nil, err
	}
	return roll.Load(sub, "images/appliance/labroll")
}

// LabProfile is the lab appliance's profile, walked from LabRoll.
func LabProfile() (roll.Profile, error) {
	r, err := LabRoll()
	if err != nil {
		return roll.Profile{}, fmt.Errorf("lab roll: %w", err)
	}
	g, err := roll.Merge(r)
	if err != nil {
		return roll.Profile{}, fmt.Errorf("lab roll: %w", err)
	}
	p, err := g.Profile("lab", nil)
	if err != nil {
		return roll.Profile{}, err
	}
	return *p, nil
}
