package installer

import (
	"fmt"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// RootPartitionName is the GPT name of an appliance image's root
// partition (images/disk names it so); it is the image's last partition.
const RootPartitionName = "root"

// GrowRoot extends the image's root partition to the end of the disk and
// moves the backup GPT there: an image is as small as its content, the
// disk is usually far larger, and a node must offer its disk to
// instances. Only the partition table changes; the root filesystem grows
// at first boot (its fstab line says x-systemd.growfs). A disk that is
// not GPT, whose last partition is not the root, or that has no room to
// spare is left as it is. It returns the root's new size in bytes (0 when
// nothing changed).
func GrowRoot(disk string) (int64, error) {
	d, err := diskfs.Open(disk, diskfs.WithOpenMode(diskfs.ReadWrite))
	if err != nil {
		return 0, fmt.Errorf("grow root: open %s: %w", disk, err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		return 0, fmt.Errorf("grow root: partition table of %s: %w", disk, err)
	}
	old, ok := pt.(*gpt.Table)
	if !ok || len(old.Partitions) == 0 {
		return 0, nil
	}
	sector := int64(old.LogicalSectorSize)
	if sector == 0 {
		sector = 512
	}
	var last *gpt.Partition
	for _, p := range old.Partitions {
		if p != nil && p.Type != gpt.Unused && (last == nil || p.End > last.End) {
			last = p
		}
	}
	if last == nil || last.Name != RootPartitionName {
		return 0, nil
	}
	// The backup GPT takes the disk's last 33 sectors (header and a
	// 128-entry array); the data ends just before it.
	end := uint64(d.Size/sector) - 34
	if end <= last.End {
		return 0, nil
	}
	// A new table (the read one keeps the image's backup header position);
	// every partition keeps its place, type, name, GUID and attributes.
	t := &gpt.Table{LogicalSectorSize: int(sector), PhysicalSectorSize: old.PhysicalSectorSize,
		GUID: old.GUID, ProtectiveMBR: old.ProtectiveMBR}
	for _, p := range old.Partitions {
		if p == nil || p.Type == gpt.Unused {
			continue
		}
		np := &gpt.Partition{Index: p.Index, Start: p.Start, End: p.End, Size: p.Size, Type: p.Type,
			Name: p.Name, GUID: p.GUID, Attributes: p.Attributes}
		if p == last {
			np.End = end
			np.Size = (end - p.Start + 1) * uint64(sector)
		}
		t.Partitions = append(t.Partitions, np)
	}
	if err := d.Partition(t); err != nil {
		return 0, fmt.Errorf("grow root: write partition table of %s: %w", disk, err)
	}
	return int64(end-last.Start+1) * sector, nil
}
