package controller

import (
	"encoding/json"
	"fmt"
	"os"

	"ironbark/internal/nodeapi"
)

// DefaultVMTypes are Eucalyptus 3/4's default VM types (cores, MiB of
// memory, GiB of disk), in its display order.
func DefaultVMTypes() []nodeapi.VMType {
	return []nodeapi.VMType{
		{Name: "m1.small", Cores: 1, MemoryMiB: 256, DiskGiB: 5},
		{Name: "t1.micro", Cores: 1, MemoryMiB: 256, DiskGiB: 5},
		{Name: "m1.medium", Cores: 1, MemoryMiB: 512, DiskGiB: 10},
		{Name: "c1.medium", Cores: 2, MemoryMiB: 512, DiskGiB: 10},
		{Name: "m1.large", Cores: 2, MemoryMiB: 512, DiskGiB: 10},
		{Name: "m1.xlarge", Cores: 2, MemoryMiB: 1024, DiskGiB: 10},
		{Name: "c1.xlarge", Cores: 2, MemoryMiB: 2048, DiskGiB: 10},
		{Name: "m2.xlarge", Cores: 2, MemoryMiB: 2048, DiskGiB: 10},
		{Name: "m3.xlarge", Cores: 4, MemoryMiB: 2048, DiskGiB: 15},
		{Name: "m2.2xlarge", Cores: 2, MemoryMiB: 4096, DiskGiB: 30},
		{Name: "m3.2xlarge", Cores: 4, MemoryMiB: 4096, DiskGiB: 30},
		{Name: "cc1.4xlarge", Cores: 8, MemoryMiB: 3072, DiskGiB: 60},
		{Name: "m2.4xlarge", Cores: 8, MemoryMiB: 4096, DiskGiB: 60},
		{Name: "hi1.4xlarge", Cores: 8, MemoryMiB: 6144, DiskGiB: 120},
		{Name: "cc2.8xlarge", Cores: 16, MemoryMiB: 6144, DiskGiB: 120},
		{Name: "cg1.4xlarge", Cores: 16, MemoryMiB: 12288, DiskGiB: 200},
		{Name: "cr1.8xlarge", Cores: 16, MemoryMiB: 16384, DiskGiB: 240},
		{Name: "hs1.8xlarge", Cores: 48, MemoryMiB: 119808, DiskGiB: 24000},
	}
}

// LoadVMTypes reads a JSON list of VM types ([{"name": "m1.small",
// "cores": 1, "memoryMiB": 256, "diskGiB": 5}, ...]), as an administrator
// edits them in Eucalyptus.
func LoadVMTypes(path string) ([]nodeapi.VMType, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("vm types: %w", err)
	}
	var vts []nodeapi.VMType
	if err := json.Unmarshal(b, &vts); err != nil {
		return nil, fmt.Errorf("vm types %s: %w", path, err)
	}
	if err := checkVMTypes(vts); err != nil {
		return nil, fmt.Errorf("vm types %s: %w", path, err)
	}
	return vts, nil
}

func checkVMTypes(vts []nodeapi.VMType) error {
	seen := map[string]bool{}
	for _, vt := range vts {
		if vt.Name == "" || vt.Cores < 1 || vt.MemoryMiB < 1 || vt.DiskGiB < 1 {
			return fmt.Errorf("type %q: name, cores, memoryMiB and diskGiB must all be set", vt.Name)
		}
		if seen[vt.Name] {
			return fmt.Errorf("type %q listed twice", vt.Name)
		}
		seen[vt.Name] = true
	}
	return nil
}
