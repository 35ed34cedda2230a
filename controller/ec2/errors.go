package ec2

import (
	"errors"
	"fmt"
	"net/http"
)

func sprintf(format string, args ...any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}

// ErrUnknownAccessKey is what a CredentialStore returns for a key it does
// not hold or that may not be used (deactivated, or its account disabled);
// the wire layer answers AuthFailure (InvalidClientTokenId to STS).
var ErrUnknownAccessKey = errors.New("unknown access key")

// Error codes as AWS spells them. Action code may use any other code too
// (EC2 has hundreds); these are the ones the wire layer and the helpers in
// this package produce.
const (
	CodeMissingParameter             = "MissingParameter"
	CodeInvalidParameterValue        = "InvalidParameterValue"
	CodeInvalidParameterCombination  = "InvalidParameterCombination"
	CodeInvalidAction                = "InvalidAction"
	CodeUnknownParameter             = "UnknownParameter"
	CodeAuthFailure                  = "AuthFailure"
	CodeInvalidClientTokenID         = "InvalidClientTokenId" // STS's AuthFailure
	CodeSignatureDoesNotMatch        = "SignatureDoesNotMatch"
	CodeRequestExpired               = "RequestExpired"
	CodeInternalError                = "InternalError"
	CodeUnavailable                  = "Unavailable"
	CodeInsufficientInstanceCapacity = "InsufficientInstanceCapacity"
	CodeMalformedQueryString         = "MalformedQueryString"
	CodeNoSuchVersion                = "NoSuchVersion"
	CodeRequestEntityTooLarge        = "RequestEntityTooLarge"
)

// MissingParameter is EC2's answer to a request without a required
// parameter.
func MissingParameter(name string) *Error {
	return Errorf(CodeMissingParameter, "The request must contain the parameter %s", name)
}

// InvalidParameterValue reports a parameter whose value is not acceptable.
func InvalidParameterValue(format string, args ...any) *Error {
	return Errorf(CodeInvalidParameterValue, format, args...)
}

// InvalidValue is InvalidParameterValue in EC2's most common wording:
// "Value (x) for parameter y is invalid. why".
func InvalidValue(name, value, why string) *Error {
	msg := fmt.Sprintf("Value (%s) for parameter %s is invalid.", value, name)
	if why != "" {
		msg += " " + why
	}
	return &Error{Code: CodeInvalidParameterValue, Message: msg, Status: http.StatusBadRequest}
}

// InvalidParameterCombination reports parameters that cannot be used
// together.
func InvalidParameterCombination(format string, args ...any) *Error {
	return Errorf(CodeInvalidParameterCombination, format, args...)
}

// InvalidAction is the answer for an action this service does not have.
func InvalidAction(action string) *Error {
	return Errorf(CodeInvalidAction, "The action %s is not valid for this web service.", action)
}

// UnknownParameter reports a parameter the action does not take.
func UnknownParameter(name string) *Error {
	return Errorf(CodeUnknownParameter, "The parameter %s is not recognized", name)
}

// AuthFailure (401): the access key is unknown or disabled.
func AuthFailure(format string, args ...any) *Error {
	e := Errorf(CodeAuthFailure, format, args...)
	e.Status = http.StatusUnauthorized
	return e
}

// SignatureDoesNotMatch (403): the key is known but the signature is wrong.
func SignatureDoesNotMatch() *Error {
	return &Error{
		Code: CodeSignatureDoesNotMatch,
		Message: "The request signature we calculated does not match the signature you provided. " +
			"Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
		Status: http.StatusForbidden,
	}
}

// RequestExpired (400): the request's time lies outside the clock-skew
// window, or its Expires / X-Amz-Expires has passed.
func RequestExpired(format string, args ...any) *Error {
	return Errorf(CodeRequestExpired, format, args...)
}

// DryRunOperation (412) is the answer to a DryRun=true call that would
// have succeeded.
func DryRunOperation() *Error {
	return &Error{Code: "DryRunOperation", Message: "Request would have succeeded, but DryRun flag is set.",
		Status: http.StatusPreconditionFailed}
}

// UnauthorizedOperation (403): the caller may not do this (e.g. touch
// another account's resource it can see, or an admin-only action).
func UnauthorizedOperation() *Error {
	return &Error{Code: "UnauthorizedOperation", Message: "You are not authorized to perform this operation.",
		Status: http.StatusForbidden}
}

// InternalError (500) is for real server faults only: clients retry 5xx
// (boto2 for over a minute). The message never carries internal details.
func InternalError() *Error {
	return &Error{Code: CodeInternalError, Message: "An internal error has occurred", Status: http.StatusInternalServerError}
}

// Unavailable (503): the server is overloaded or a dependency (the store)
// is down; clients retry.
func Unavailable() *Error {
	return &Error{Code: CodeUnavailable, Message: "The server is overloaded or under maintenance; try again later.", Status: http.StatusServiceUnavailable}
}

// InsufficientInstanceCapacity is sent with HTTP 400, not the 500 AWS
// uses: clients retry 5xx (boto2 for over a minute), and a full private
// cloud does not empty itself in seconds; the user should hear at once.
func InsufficientInstanceCapacity(format string, args ...any) *Error {
	return Errorf(CodeInsufficientInstanceCapacity, format, args...)
}

// notFoundMessages are AWS's wordings for the NotFound codes an EC2
// implementation meets most.
var notFoundMessages = map[string]string{
	"InvalidInstanceID.NotFound":    "The instance ID '%s' does not exist",
	"InvalidKeyPair.NotFound":       "The key pair '%s' does not exist",
	"InvalidGroup.NotFound":         "The security group '%s' does not exist",
	"InvalidAMIID.NotFound":         "The image id '[%s]' does not exist",
	"InvalidAllocationID.NotFound":  "The allocation ID '%s' does not exist",
	"InvalidAssociationID.NotFound": "The association ID '%s' does not exist",
	"InvalidAddress.NotFound":       "Address '%s' not found.",
	"InvalidVolume.NotFound":        "The volume '%s' does not exist.",
	"InvalidSnapshot.NotFound":      "The snapshot '%s' does not exist.",
	"InvalidZone.NotFound":          "The zone '%s' does not exist.",
	"InvalidInstanceType":           "The instance type '%s' does not exist",
}

// NotFound makes the error for a missing resource, e.g.
// NotFound("InvalidInstanceID.NotFound", "i-0123") → "The instance ID
// 'i-0123' does not exist". Unknown codes get a generic message.
func NotFound(code, id string) *Error {
	format, ok := notFoundMessages[code]
	if !ok {
		format = "The ID '%s' does not exist"
	}
	return &Error{Code: code, Message: fmt.Sprintf(format, id), Status: http.StatusBadRequest}
}

// Duplicate makes the error for a name already taken, e.g.
// Duplicate("InvalidKeyPair.Duplicate", "mykey").
func Duplicate(code, name string) *Error {
	format := "The resource '%s' already exists."
	switch code {
	case "InvalidKeyPair.Duplicate":
		format = "The keypair '%s' already exists."
	case "InvalidGroup.Duplicate":
		format = "The security group '%s' already exists"
	}
	return &Error{Code: code, Message: fmt.Sprintf(format, name), Status: http.StatusBadRequest}
}

// Malformed makes the error for an ID of the wrong shape, e.g.
// Malformed("InvalidInstanceID.Malformed", "x-1") → `Invalid id: "x-1"`.
func Malformed(code, id string) *Error {
	return &Error{Code: code, Message: fmt.Sprintf("Invalid id: %q", id), Status: http.StatusBadRequest}
}

// AsError maps any error to the *Error sent to the client: an *Error
// anywhere in the chain is kept (Status 0 means 400); anything else is an
// InternalError, whose message does not leak the cause.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		if e.Status == 0 {
			c := *e
			c.Status = http.StatusBadRequest
			return &c
		}
		return e
	}
	return InternalError()
}
