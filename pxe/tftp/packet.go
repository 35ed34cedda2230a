package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// TFTP opcodes (RFC 1350, 2347).
const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// TFTP error codes (RFC 1350, 2347).
const (
	errUndefined     = 0
	errNotFound      = 1
	errAccess        = 2
	errIllegalOp     = 4
	errOptionRefused = 8
)

// Option limits: blksize (RFC 2348), timeout (RFC 2349), windowsize
// (RFC 7440). A value outside its range is ignored, as an unknown
// option is: the option is left out of the OACK and the client uses the
// protocol default.
const (
	minBlockSize  = 8
	maxBlockSize  = 65464
	maxWindowSize = 65535
	maxTimeout    = 255
)

// request is a parsed RRQ or WRQ.
type request struct {
	op       uint16
	filename string
	mode     string // lower case: "octet" or "netascii"
	// opts holds the options in the order sent, names in lower case.
	opts []option
}

type option struct{ name, value string }

var errMalformed = errors.New("malformed request")

// parseRequest parses an RRQ or WRQ: opcode, then NUL-terminated
// filename, mode and option name/value pairs (RFC 1350, 2347).
func parseRequest(p []byte) (request, error) {
	if len(p) < 2 {
		return request{}, fmt.Errorf("%w: %d bytes", errMalformed, len(p))
	}
	r := request{op: binary.BigEndian.Uint16(p)}
	if r.op != opRRQ && r.op != opWRQ {
		return request{}, fmt.Errorf("%w: opcode %d", errMalformed, r.op)
	}
	fields := bytes.Split(p[2:], []byte{0})
	// A well-formed request ends in NUL, so the last field is empty.
	if len(fields) < 3 || len(fields[len(fields)-1]) != 0 {
		return request{}, fmt.Errorf("%w: fields not NUL-terminated", errMalformed)
	}
	fields = fields[:len(fields)-1]
	r.filename = string(fields[0])
	r.mode = strings.ToLower(string(fields[1]))
	rest := fields[2:]
	if len(rest)%2 != 0 {
		return request{}, fmt.Errorf("%w: option %q has no value", errMalformed, rest[len(rest)-1])
	}
	for i := 0; i < len(rest); i += 2 {
		r.opts = append(r.opts, option{strings.ToLower(string(rest[i])), string(rest[i+1])})
	}
	return r, nil
}

// negotiated is what the server accepted of a client's options.
type negotiated struct {
	blksize, window int
	timeoutSec      int  // 0: the server's own timeout
	tsize           bool // the client asked for the size
	// oack lists the accepted options in the client's order, with the
	// values the server answers.
	oack []option
}

// negotiate applies the server's limits to the options of a read
// request. Unknown options and values that are not numbers or lie
// outside the option's range are ignored; a blksize or windowsize above
// the server's maximum is lowered to it (RFC 2348, RFC 7440 let the
// server answer a smaller value).
func negotiate(opts []option, maxBlock, maxWindow int) negotiated {
	n := negotiated{blksize: 512, window: 1}
	seen := map[string]bool{}
	for _, o := range opts {
		if seen[o.name] {
			continue // the first of duplicated options counts
		}
		v, err := strconv.Atoi(o.value)
		switch o.name {
		case "blksize":
			if err != nil || v < minBlockSize || v > maxBlockSize {
				continue
			}
			n.blksize = min(v, maxBlock)
			o.value = strconv.Itoa(n.blksize)
		case "windowsize":
			if err != nil || v < 1 || v > maxWindowSize {
				continue
			}
			n.window = min(v, maxWindow)
			o.value = strconv.Itoa(n.window)
		case "timeout":
			if err != nil || v < 1 || v > maxTimeout {
				continue
			}
			n.timeoutSec = v
		case "tsize":
			if err != nil || v != 0 {
				continue // a read request asks with tsize 0
			}
			n.tsize = true
			continue // answered once the size is known
		default:
			continue
		}
		seen[o.name] = true
		n.oack = append(n.oack, o)
	}
	return n
}

// oackPacket builds an OACK with opts.
func oackPacket(opts []option) []byte {
	b := binary.BigEndian.AppendUint16(nil, opOACK)
	for _, o := range opts {
		b = append(append(append(append(b, o.name...), 0), o.value...), 0)
	}
	return b
}

// errorPacket builds an ERROR packet.
func errorPacket(code uint16, msg string) []byte {
	b := binary.BigEndian.AppendUint16(nil, opERROR)
	b = binary.BigEndian.AppendUint16(b, code)
	return append(append(b, msg...), 0)
}

// parseAck returns the block number of an ACK; ok is false for anything
// else. A client's ERROR is returned as err.
func parseAck(p []byte) (block uint16, ok bool, err error) {
	if len(p) < 4 {
		return 0, false, nil
	}
	switch binary.BigEndian.Uint16(p) {
	case opACK:
		return binary.BigEndian.Uint16(p[2:]), true, nil
	case opERROR:
		msg := p[4:]
		if i := bytes.IndexByte(msg, 0); i >= 0 {
			msg = msg[:i]
		}
		return 0, false, fmt.Errorf("client error %d: %q", binary.BigEndian.Uint16(p[2:]), msg)
	}
	return 0, false, nil
}
