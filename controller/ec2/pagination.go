package ec2

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"sort"
)

// Default bounds of MaxResults, as EC2 validates them for most Describe
// calls (DescribeInstanceTypes takes 5..100: pass its own bounds).
const (
	MinMaxResults = 5
	MaxMaxResults = 1000
)

// Page is the MaxResults / NextToken pair of a paginated Describe call.
//
// Tokens are opaque to clients: the last key of the previous page plus a
// MAC over it, the action and the caller's account, under the server's
// token key. A token that was altered, or made for another action or
// account, is InvalidParameterValue "Invalid NextToken".
type Page struct {
	Max   int    // MaxResults; 0 when absent (answer everything)
	After string // resume after this key; "" on the first page

	key     []byte
	action  string
	account string
}

// tokenMACSize is the length of the MAC kept in a token: 128 bits is
// plenty against forgery and keeps tokens short.
const tokenMACSize = 16

// tokenVersion leads every token so the format can change later.
const tokenVersion = 1

// Page reads MaxResults (bounded to [min, max]; pass 0, 0 for EC2's usual
// 5..1000) and NextToken.
func (r *Request) Page(min, max int) (Page, error) {
	if min == 0 && max == 0 {
		min, max = MinMaxResults, MaxMaxResults
	}
	pg := Page{key: r.pageKey, action: r.Action, account: r.Principal.AccountID}
	p := r.Query()
	n, err := p.IntRange("MaxResults", 0, int64(min), int64(max))
	if err != nil {
		return Page{}, err
	}
	pg.Max = int(n)
	if tok := p.String("NextToken"); tok != "" {
		after, ok := pg.open(tok)
		if !ok {
			return Page{}, InvalidParameterValue("Invalid NextToken")
		}
		pg.After = after
	}
	return pg, nil
}

func (pg Page) mac(after string) []byte {
	m := hmac.New(sha256.New, pg.key)
	m.Write([]byte("ironbark NextToken\x00"))
	m.Write([]byte(pg.action))
	m.Write([]byte{0})
	m.Write([]byte(pg.account))
	m.Write([]byte{0})
	m.Write([]byte(after))
	return m.Sum(nil)[:tokenMACSize]
}

// NextToken makes the token that resumes after lastKey.
func (pg Page) NextToken(lastKey string) string {
	b := make([]byte, 0, 1+len(lastKey)+tokenMACSize)
	b = append(b, tokenVersion)
	b = append(b, lastKey...)
	b = append(b, pg.mac(lastKey)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (pg Page) open(tok string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 1+tokenMACSize || b[0] != tokenVersion {
		return "", false
	}
	after := string(b[1 : len(b)-tokenMACSize])
	if !hmac.Equal(b[len(b)-tokenMACSize:], pg.mac(after)) {
		return "", false
	}
	return after, true
}

// Paginate cuts one page out of items, which must be sorted ascending by
// key: the items after pg.After, at most pg.Max of them (all when Max is
// 0), and the NextToken for the rest ("" on the last page).
func Paginate[T any](items []T, key func(T) string, pg Page) (page []T, nextToken string) {
	start := 0
	if pg.After != "" {
		start = sort.Search(len(items), func(i int) bool { return key(items[i]) > pg.After })
	}
	rest := items[start:]
	if pg.Max <= 0 || len(rest) <= pg.Max {
		return rest, ""
	}
	page = rest[:pg.Max]
	return page, pg.NextToken(key(page[len(page)-1]))
}
