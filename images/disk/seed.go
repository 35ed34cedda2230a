package disk

import (
	"crypto/sha256"

	"github.com/google/uuid"
)

// SeedUUID derives a version-4-shaped UUID from a seed and a purpose
// ("rootfs", "gpt-disk", ...), so that rebuilding with the same seed gives
// the same identifiers.
func SeedUUID(seed, purpose string) uuid.UUID {
	sum := sha256.Sum256([]byte("ironbark-image\x00" + seed + "\x00" + purpose))
	var u uuid.UUID
	copy(u[:], sum[:16])
	u[6] = (u[6] & 0x0f) | 0x40
	u[8] = (u[8] & 0x3f) | 0x80
	return u
}
