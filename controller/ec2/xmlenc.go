package ec2

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"reflect"
	"time"
)

// TimeFormat is how EC2 writes timestamps; other forms break the Go and
// JS SDKs.
const TimeFormat = "2006-01-02T15:04:05.000Z"

// Time is a timestamp in a response. It is written in UTC as
// 2026-11-24T20:45:42.000Z; a zero Time is left out entirely (an empty
// element breaks botocore and the Go SDK).
type Time struct{ time.Time }

// TimeOf wraps t.
func TimeOf(t time.Time) Time { return Time{t} }

// String is t in TimeFormat.
func (t Time) String() string { return t.UTC().Format(TimeFormat) }

// MarshalXML writes t as an element's text, or nothing when t is zero.
func (t Time) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	if t.IsZero() {
		return nil
	}
	return e.EncodeElement(t.String(), start)
}

// MarshalXMLAttr writes t as an attribute, or no attribute when t is zero.
func (t Time) MarshalXMLAttr(name xml.Name) (xml.Attr, error) {
	if t.IsZero() {
		return xml.Attr{}, nil
	}
	return xml.Attr{Name: name, Value: t.String()}, nil
}

// UnmarshalXML reads what MarshalXML writes (and any RFC 3339 time).
func (t *Time) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	var s string
	if err := d.DecodeElement(&s, &start); err != nil {
		return err
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("ec2 time %q: %w", s, err)
	}
	t.Time = v
	return nil
}

// List is a list in a response: its element holds one <item> per member,
// which is the only form boto2, the Go SDK and the JS SDK read (other
// names give them an empty list, silently). Unlike a `xml:"x>item"` tag
// it writes the wrapping element even when empty (<instancesSet/>), as EC2
// does, so that the AWS CLI prints "Reservations": [] and not nothing.
// Add omitempty to the field's tag to leave an empty list out.
//
//	Instances ec2.List[Instance] `xml:"instancesSet"`
type List[T any] []T

var itemStart = xml.StartElement{Name: xml.Name{Local: "item"}}

// MarshalXML writes the wrapper and an <item> per member.
func (l List[T]) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	if err := e.EncodeToken(start); err != nil {
		return err
	}
	for i := range l {
		if err := e.EncodeElement(&l[i], itemStart); err != nil {
			return err
		}
	}
	return e.EncodeToken(start.End())
}

// UnmarshalXML reads the <item>s back (used by tests and clients in Go).
func (l *List[T]) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	var w struct {
		Items []T `xml:"item"`
	}
	if err := d.DecodeElement(&w, &start); err != nil {
		return err
	}
	*l = w.Items
	return nil
}

// Namespace is the XML namespace of answers to a request of this Version:
// http://ec2.amazonaws.com/doc/<Version>/. Real clients send 2016-11-15
// (AWS CLI, boto3, the SDKs), 2015-10-01 (euca2ools), 2014-10-01 (boto2),
// 2014-06-15 and 2014-05-01 (Perl clients); any other well-formed version
// is answered in its own namespace too. An empty version is
// MissingParameter; one that is not a YYYY-MM-DD date is NoSuchVersion.
func Namespace(version string) (string, error) {
	if version == "" {
		return "", MissingParameter("Version")
	}
	if len(version) != len("2006-01-02") {
		return "", noSuchVersion(version)
	}
	if _, err := time.Parse("2006-01-02", version); err != nil {
		return "", noSuchVersion(version)
	}
	return "http://ec2.amazonaws.com/doc/" + version + "/", nil
}

func noSuchVersion(v string) *Error {
	return Errorf(CodeNoSuchVersion, "The requested version (%s) of service AmazonEC2 does not exist", v)
}

// requestIDSetter is how the wire layer puts the requestId into a
// response: embed ResponseMeta to get it.
type requestIDSetter interface{ SetRequestID(string) }

// MarshalResponse writes the XML answer to an action: the XML declaration
// and nothing before it, then <{action}Response xmlns=ns> holding v's
// fields. v must have SetRequestID (embed ResponseMeta; a struct value is
// copied so that it can be set); nil answers with the requestId alone.
func MarshalResponse(action, ns, requestID string, v any) ([]byte, error) {
	if v == nil {
		v = &ResponseMeta{}
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Struct {
		p := reflect.New(rv.Type())
		p.Elem().Set(rv)
		v = p.Interface()
	}
	s, ok := v.(requestIDSetter)
	if !ok {
		return nil, fmt.Errorf("marshal %s response: %T has no SetRequestID method (embed ec2.ResponseMeta)", action, v)
	}
	s.SetRequestID(requestID)
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	start := xml.StartElement{Name: xml.Name{Space: ns, Local: action + "Response"}}
	if err := enc.EncodeElement(v, start); err != nil {
		return nil, fmt.Errorf("marshal %s response: %w", action, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal %s response: %w", action, err)
	}
	return buf.Bytes(), nil
}

// errorResponse is EC2's error envelope. RequestID is spelled so on
// purpose: that is what clients read.
type errorResponse struct {
	XMLName   xml.Name    `xml:"Response"`
	Errors    []errorItem `xml:"Errors>Error"`
	RequestID string      `xml:"RequestID"`
}

type errorItem struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

// MarshalError writes EC2's error envelope for e.
func MarshalError(e *Error, requestID string) []byte {
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	// Encoding strings cannot fail but for invalid UTF-8, which
	// encoding/xml replaces; an error here would be a bug in this file.
	_ = enc.Encode(errorResponse{
		Errors:    []errorItem{{Code: e.Code, Message: e.Message}},
		RequestID: requestID,
	})
	_ = enc.Close()
	return buf.Bytes()
}
