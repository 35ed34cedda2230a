package ec2

import (
	"context"
	"net/url"
)

// Principal is the authenticated caller.
type Principal struct {
	AccountID string // 12 digits
	AccessKey string
	Admin     bool   // the cloud administrator sees every account's resources
	User      string // the account's user who signed; "" for the account itself
	// AccountAdmin: the account itself or one of its admin users, who
	// manage the account's users and keys (IAM).
	AccountAdmin bool
}

// Request is one authenticated, parsed EC2 call.
type Request struct {
	Action    string
	Version   string
	Params    url.Values // every parameter but the signature's own
	Principal Principal
	RequestID string
	SourceIP  string
	// Path is the URL path the call came to: "/services/Eucalyptus" marks
	// Eucalyptus' own clients, which expect Eucalyptus' answers.
	Path string
	// Service is the service of a Signature V4 credential scope as sent
	// ("ec2", "sts"; "" for Signature V2).
	Service string

	pageKey []byte // the Server's NextToken MAC key (see Page)
}

// Handler runs actions. It returns a response struct, marshalled with
// encoding/xml as the children of <{Action}Response xmlns="..."> (embed
// ResponseMeta to carry the requestId), or an error; an *Error keeps its
// code and status, anything else is an InternalError (500).
type Handler interface {
	ServeEC2(ctx context.Context, r *Request) (any, error)
}

// CredentialStore finds the secret key and owner of an access key.
// It returns ErrUnknownAccessKey for keys it does not know.
type CredentialStore interface {
	LookupAccessKey(ctx context.Context, accessKey string) (secret string, p Principal, err error)
}

// ResponseMeta is embedded first in every response struct.
type ResponseMeta struct {
	RequestID string `xml:"requestId"`
}

// SetRequestID is called by the wire layer before marshalling.
func (m *ResponseMeta) SetRequestID(id string) { m.RequestID = id }

// Error is an EC2 API error: Code as AWS spells it, a message for humans
// and the HTTP status it is sent with (400 unless set).
type Error struct {
	Code    string
	Message string
	Status  int
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf makes a 400 *Error.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: sprintf(format, args...), Status: 400}
}
