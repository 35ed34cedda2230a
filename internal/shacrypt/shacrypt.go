package shacrypt

import (
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// DefaultRounds is the round count glibc uses when a hash names none.
const DefaultRounds = 5000

const (
	minRounds = 1000
	maxRounds = 999999999
	maxSalt   = 16
	alphabet  = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// Hash hashes password with a fresh random salt and DefaultRounds.
func Hash(password string) (string, error) {
	salt, err := Salt()
	if err != nil {
		return "", err
	}
	return HashWith(password, salt, DefaultRounds)
}

// Salt is 16 random characters of crypt's alphabet.
func Salt() (string, error) {
	b := make([]byte, maxSalt)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("shacrypt: salt: %w", err)
	}
	for i, c := range b {
		b[i] = alphabet[int(c)%len(alphabet)]
	}
	return string(b), nil
}

// HashWith hashes password with a given salt (at most 16 characters are
// used, as glibc does) and round count.
func HashWith(password, salt string, rounds int) (string, error) {
	if rounds < minRounds || rounds > maxRounds {
		return "", fmt.Errorf("shacrypt: rounds %d outside %d..%d", rounds, minRounds, maxRounds)
	}
	if strings.ContainsAny(salt, "$:\n") {
		return "", errors.New("shacrypt: the salt may not hold '$', ':' or a newline")
	}
	if len(salt) > maxSalt {
		salt = salt[:maxSalt]
	}
	sum := digest([]byte(password), []byte(salt), rounds)
	var b strings.Builder
	b.WriteString("$6$")
	if rounds != DefaultRounds {
		fmt.Fprintf(&b, "rounds=%d$", rounds)
	}
	b.WriteString(salt)
	b.WriteByte('$')
	b.WriteString(encode(sum))
	return b.String(), nil
}

// Verify says whether password matches a "$6$" hash.
func Verify(hashed, password string) bool {
	f := strings.Split(hashed, "$")
	if len(f) < 4 || f[0] != "" || f[1] != "6" {
		return false
	}
	rounds, salt := DefaultRounds, f[2]
	if r, ok := strings.CutPrefix(f[2], "rounds="); ok && len(f) == 5 {
		n, err := strconv.Atoi(r)
		if err != nil {
			return false
		}
		rounds, salt = n, f[3]
	}
	got, err := HashWith(password, salt, rounds)
	return err == nil && got == hashed
}

// repeat writes src into h, cycled, until n bytes are written.
func repeat(h hash.Hash, src []byte, n int) {
	for ; n > len(src); n -= len(src) {
		h.Write(src)
	}
	h.Write(src[:n])
}

// digest is the SHA-crypt computation for SHA-512.
func digest(pw, salt []byte, rounds int) []byte {
	alt := sha512.New()
	alt.Write(pw)
	alt.Write(salt)
	alt.Write(pw)
	altSum := alt.Sum(nil)

	a := sha512.New()
	a.Write(pw)
	a.Write(salt)
	repeat(a, altSum, len(pw))
	for n := len(pw); n > 0; n >>= 1 {
		if n&1 == 1 {
			a.Write(altSum)
		} else {
			a.Write(pw)
		}
	}
	cur := a.Sum(nil)

	dp := sha512.New()
	for range len(pw) {
		dp.Write(pw)
	}
	p := cycled(dp.Sum(nil), len(pw))

	ds := sha512.New()
	for range 16 + int(cur[0]) {
		ds.Write(salt)
	}
	s := cycled(ds.Sum(nil), len(salt))

	for i := range rounds {
		h := sha512.New()
		if i%2 == 1 {
			h.Write(p)
		} else {
			h.Write(cur)
		}
		if i%3 != 0 {
			h.Write(s)
		}
		if i%7 != 0 {
			h.Write(p)
		}
		if i%2 == 1 {
			h.Write(cur)
		} else {
			h.Write(p)
		}
		cur = h.Sum(cur[:0])
	}
	return cur
}

// cycled is sum repeated to n bytes.
func cycled(sum []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, sum[:min(len(sum), n-len(out))]...)
	}
	return out
}

// order is the byte permutation SHA-512 crypt encodes in: 21 groups of
// three bytes, then the last byte alone.
var order = [64]byte{
	0, 21, 42, 22, 43, 1, 44, 2, 23, 3, 24, 45, 25, 46, 4, 47, 5, 26, 6, 27, 48, 28, 49, 7,
	50, 8, 29, 9, 30, 51, 31, 52, 10, 53, 11, 32, 12, 33, 54, 34, 55, 13, 56, 14, 35, 15, 36, 57,
	37, 58, 16, 59, 17, 38, 18, 39, 60, 40, 61, 19, 62, 20, 41, 63,
}

// encode is crypt's base-64: each group of three bytes (first byte most
// significant) as four characters, least significant six bits first.
func encode(sum []byte) string {
	var b strings.Builder
	put := func(w uint32, n int) {
		for range n {
			b.WriteByte(alphabet[w&0x3f])
			w >>= 6
		}
	}
	for i := 0; i < 63; i += 3 {
		put(uint32(sum[order[i]])<<16|uint32(sum[order[i+1]])<<8|uint32(sum[order[i+2]]), 4)
	}
	put(uint32(sum[order[63]]), 2)
	return b.String()
}
