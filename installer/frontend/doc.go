// Package frontend installs an ironbark frontend onto a disk: the answers
// (what Rocks asked in its installer screens: cluster, public and private
// network, time, admin credentials, target disk, rolls) read from a
// versioned YAML answer file or filled in by the installer screens (tui),
// checked all at once against the machine (its NICs and disks) before
// anything is written, then a list of Steps (partition with go-diskfs, lay
// the frontend appliance image down, write the frontend's data partition
// with its configuration, make the disk bootable last) run in order, each
// logged with a String that reads like the shell command it replaces.
//
// The same Answers, Field table and Steps serve the unattended install
// (`ironbark install --answers FILE`, the ISO's ironbark.answers=) and the
// screens: the screens set fields by path through the table, so a value
// typed on a screen is checked by the same code as one read from a file.
package frontend
