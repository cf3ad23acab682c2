package gateway

import (
	"errors"
	"fmt"
)

// The error kinds of docs/gateway.md section 4, and the client's own
// (KindConnection, KindCanceled, KindBadResponse) for failures where no
// answer came from the gateway.
const (
	KindBadRequest           = "bad_request"            // 400: malformed body, bad typed value, bad option or pid
	KindUnauthorized         = "unauthorized"           // 401: missing or wrong token
	KindForbidden            = "forbidden"              // 403: a non-loopback client without --gateway-remote
	KindNoMembers            = "no_members"             // 404: the group has no live member
	KindNoProc               = "noproc"                 // 404: the pid is not alive
	KindNotFound             = "not_found"              // 404: no such path or registration
	KindMethodNotAllowed     = "method_not_allowed"     // 405
	KindTooLarge             = "too_large"              // 413: the body is over the gateway's limit
	KindUnsupportedMediaType = "unsupported_media_type" // 415
	KindRejected             = "rejected"               // 422: the handler rejected the request
	KindCrash                = "crash"                  // 502: the handler raised; see RemoteType
	KindExited               = "exited"                 // 502: the process exited during the call
	KindUnencodable          = "unencodable"            // 502: the reply has no form in the accepted type
	KindInternal             = "internal"               // 500: the gateway failed handling the request
	KindOverloaded           = "overloaded"             // 503: the member's mailbox is full
	KindNodeDown             = "nodedown"               // 503: the member's node is down or unreachable
	KindUnavailable          = "unavailable"            // 503: the gateway's node is starting, draining or without its store
	KindTimeout              = "timeout"                // 504, or the context's deadline passed
	// KindConnection: the gateway could not be reached (RetrySafe) or the
	// connection broke after the request was sent (not RetrySafe).
	KindConnection = "connection"
	// KindCanceled: the context was canceled; the request may have started.
	KindCanceled = "canceled"
	// KindBadResponse: the gateway's answer could not be read (not RetrySafe).
	KindBadResponse = "bad_response"
)

// Error is every error a Client returns. Use errors.As to get it, or
// KindOf and IsRetrySafe.
type Error struct {
	// Status is the HTTP status of the gateway's answer, 0 when none came.
	Status int
	// Kind is one of the Kind constants.
	Kind string
	// Message is the gateway's (or the client's) explanation.
	Message string
	// RetrySafe is true only when the request provably did not start: it
	// may be sent again, elsewhere or later. Otherwise only an idempotent
	// request may be retried.
	RetrySafe bool
	// RemoteType is the exception class of a crash, when known.
	RemoteType string
	// Member is the pid that failed, when known.
	Member *Pid
	// Err is the underlying cause (a transport or context error), if any.
	Err error
}

func (e *Error) Error() string {
	msg := "shoal gateway: " + e.Kind
	if e.Status != 0 {
		msg += fmt.Sprintf(" (%d)", e.Status)
	}
	if e.RemoteType != "" {
		msg += " " + e.RemoteType
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Unwrap returns the underlying cause, so errors.Is(err,
// context.DeadlineExceeded) holds for a deadline that passed in the client.
func (e *Error) Unwrap() error { return e.Err }

// KindOf is the Kind of err when it is (or wraps) an *Error, else "".
func KindOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ""
}

// IsRetrySafe tells whether err is an *Error whose request provably did not
// start, so sending it again cannot run it twice.
func IsRetrySafe(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.RetrySafe
}

// Rejection is the error a member handler returns to reject a request: the
// caller gets KindRejected with this message. Build one with Reject.
type Rejection struct {
	Message string
}

func (r *Rejection) Error() string { return "rejected: " + r.Message }

// Reject returns a *Rejection: a handler that returns it answers 422 and the
// caller gets KindRejected.
func Reject(format string, args ...any) error {
	return &Rejection{Message: fmt.Sprintf(format, args...)}
}

// errorBody is the gateway's {"error": {...}} answer.
type errorBody struct {
	Error *struct {
		Kind       string `json:"kind"`
		Message    string `json:"message"`
		RetrySafe  bool   `json:"retry_safe"`
		RemoteType string `json:"remote_type"`
		Member     *Pid   `json:"member"`
	} `json:"error"`
}
