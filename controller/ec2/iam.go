package ec2

// IAM's Query API, for the account's users and access keys, is answered
// on the EC2 endpoint too, as STS's is: a call is IAM's when its Version
// is IAM's or it is signed for the service "iam". IAM answers in its own
// namespace with STS's shapes: a <ActionResult> wrapper, the request id in
// <ResponseMetadata> (embed STSResponseMeta), errors in <ErrorResponse>.
const (
	IAMVersion   = "2010-05-08"
	IAMNamespace = "https://iam.amazonaws.com/doc/2010-05-08/"
)

// IsIAM reports whether the call is to IAM rather than EC2 or STS.
func (r *Request) IsIAM() bool { return !r.IsSTS() && (r.Service == "iam" || r.Version == IAMVersion) }
