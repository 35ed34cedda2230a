package store

// PendingNotes is how many notifications tx still has to send at its
// commit (tests: the ones a Batch took are not).
func PendingNotes(tx *Tx) int { return len(tx.notes) / 2 }
