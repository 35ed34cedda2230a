package ec2

import (
	"bytes"
	"encoding/xml"
	"net/http"
)

// STS's Query API (GetCallerIdentity) is answered on the EC2 endpoint too:
// automation tools ask it for the account before anything else. A call is
// STS's when its Version is STS's or it is signed for the service "sts";
// it is answered in STS's namespace, with STS's result wrapper and error
// envelope, which differ from EC2's.
const (
	STSVersion   = "2011-06-15"
	STSNamespace = "https://sts.amazonaws.com/doc/2011-06-15/"
)

// IsSTS reports whether the call is to STS rather than EC2.
func (r *Request) IsSTS() bool { return r.Service == "sts" || r.Version == STSVersion }

// STSResponseMeta is embedded last in an STS response struct: STS puts
// the request id in <ResponseMetadata><RequestId>, after the result.
type STSResponseMeta struct {
	RequestID string `xml:"ResponseMetadata>RequestId"`
}

// SetRequestID is called by the wire layer before marshalling.
func (m *STSResponseMeta) SetRequestID(id string) { m.RequestID = id }

type stsErrorResponse struct {
	XMLName   xml.Name `xml:"ErrorResponse"`
	Xmlns     string   `xml:"xmlns,attr"`
	Type      string   `xml:"Error>Type"`
	Code      string   `xml:"Error>Code"`
	Message   string   `xml:"Error>Message"`
	RequestID string   `xml:"RequestId"`
}

// MarshalSTSError writes STS's error envelope for e: Type is Sender for a
// client's fault, Receiver for the server's.
func MarshalSTSError(e *Error, requestID string) []byte {
	return marshalQueryError(STSNamespace, e, requestID)
}

// marshalQueryError writes the error envelope STS and IAM share, in the
// service's namespace.
func marshalQueryError(ns string, e *Error, requestID string) []byte {
	typ := "Sender"
	if e.Status >= http.StatusInternalServerError {
		typ = "Receiver"
	}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	_ = enc.Encode(stsErrorResponse{Xmlns: ns, Type: typ, Code: e.Code, Message: e.Message, RequestID: requestID})
	_ = enc.Close()
	return buf.Bytes()
}
