// Package ec2 is the EC2 Query protocol on the wire: it parses GET and
// form-POST requests, verifies Signature V4 and V2, dispatches the action to
// a Handler, and writes the XML answer or EC2's error envelope in the
// namespace of the request's Version. It knows nothing of the store: the
// controller package implements Handler and CredentialStore.
//
// # For action writers
//
// A Handler gets an authenticated *Request and returns a response struct
// or an error. Read parameters through r.Query(), a Params:
//
//	p := r.Query()
//	if err := p.Check("InstanceId.N", "Filter.N.Name", "Filter.N.Value.N",
//		"MaxResults", "NextToken"); err != nil { // UnknownParameter
//		return nil, err
//	}
//	name, err := p.Required("KeyName")        // MissingParameter if absent/empty
//	zone := p.Optional("Placement.AvailabilityZone", "")
//	n, err := p.Int("MinCount", 1)           // InvalidParameterValue if not an int
//	n, err := p.IntRange("MaxCount", 1, 1, 100)
//	dry, err := p.Bool("DryRun", false)
//	ids, err := p.Strings("InstanceId")      // InstanceId.1, .2, ... by index, gaps ok
//	perms, err := p.List("IpPermissions")    // []Params scoped to "IpPermissions.N."
//	for _, perm := range perms {
//		ranges, _ := perm.List("IpRanges")   // ranges[i].String("CidrIp")
//	}
//	ebs := item.Sub("Ebs")                   // BlockDeviceMapping.N.Ebs.VolumeSize
//	fs, err := p.Filters()                   // Filter.N.Name / Filter.N.Value.M, sizes capped
//	m, err := fs.Compile("instance-id", "instance-state-name", "tag:*", "tag-key")
//	ok := m.Match(func(name string) []string { ... the resource's values ... })
//	pg, err := r.Page(0, 0)                  // MaxResults 5..1000, NextToken (tamper-evident)
//	items, next := ec2.Paginate(sorted, keyOf, pg)
//
// Paginate wants items sorted ascending by the key it is given (bytewise);
// NextToken values are MAC'd with Config.TokenKey over the action and the
// caller's account, so they survive a restart only if the key does.
//
// Errors: return an *Error; constructors give AWS's codes, statuses and
// wording: MissingParameter, InvalidParameterValue, InvalidValue,
// InvalidParameterCombination, InvalidAction (for actions the Handler does
// not have), UnknownParameter, AuthFailure, SignatureDoesNotMatch,
// RequestExpired, InternalError (500), Unavailable (503),
// InsufficientInstanceCapacity (500, as AWS), DryRunOperation (412),
// UnauthorizedOperation (403), NotFound(code, id) (e.g.
// "InvalidInstanceID.NotFound"), Duplicate(code, name), Malformed(code, id),
// or Errorf(code, ...) for any other code (400). Any other error is answered as
// InternalError (500) and logged; a panic is recovered the same way.
//
// Responses: a struct (or pointer) embedding ResponseMeta first; the wire
// layer sets its requestId and writes it as the children of
// <{Action}Response xmlns="http://ec2.amazonaws.com/doc/{Version}/">. Use
// ec2.List[T] (or `xml:"set>item"`) for lists, ec2.Time for timestamps,
// numbers as Go integers, and no empty elements (omitempty). The Server
// writes such structs with its own encoder (fastxml.go, about 4x faster
// than encoding/xml and byte for byte the same, which tests and a fuzz
// target check); a type using anything more (attributes, chardata,
// interfaces, other marshalers) is written by encoding/xml instead.
//
// # On the wire
//
// The Server answers GET and form POST at /, /services/compute and
// /services/Eucalyptus (trailing slash or not). It verifies Signature V4
// (Authorization header, or presigned X-Amz-* query; the canonical request
// is built from exactly the SignedHeaders the client lists, the body is
// hashed, and the key is derived from the credential scope as sent) and
// Signature V2 (HmacSHA256 or HmacSHA1, Timestamp or Expires; the Host is
// tried with and without its port). Signatures are compared in constant
// time; requests outside Config.ClockSkew get RequestExpired. An unknown,
// deactivated or disabled access key is AuthFailure (401; STS and IAM,
// iam.go: InvalidClientTokenId, 403), a wrong signature SignatureDoesNotMatch
// (403), a body over Config.MaxBodyBytes RequestEntityTooLarge (413).
// Every answer starts with the XML declaration, carries a UUID request id
// in the x-amzn-RequestId header and in the body (requestId, or RequestID
// in an error), and is logged as one slog line (action, account, status,
// duration, auth scheme, error code). A captured request can be replayed
// within the clock-skew window, as on AWS: RunInstances relies on
// ClientToken for idempotency.
//
// Package ec2test (tests only) has an aws-sdk-go-v2 client for a test
// listener and a Signature V2 signer.
package ec2
