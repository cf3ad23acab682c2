// Package gateway is the Go client of shoal's HTTP/JSON gateway (protocol
// v1, docs/gateway.md): call a process group or a pid, cast, send, list a
// group's members, and serve as a group member from a net/http callback
// server. It uses nothing but the standard library.
//
// Values cross the gateway in the JSON mapping of docs/gateway.md section
// 2: nil, bool, string, integers (int64), floats (float64), []any,
// map[string]any, and the typed forms Pid, Bin (bytes), Crash (an exit
// reason) and KV (a map whose keys are not all strings).
//
// Every error a Client method returns is an *Error carrying the shoal error
// kind and RetrySafe: true only when the request provably did not start, so
// it may be sent again (elsewhere or later); otherwise only an idempotent
// request may be retried.
//
// A call waits at most DefaultTimeout (5 s) unless CallOptions.Timeout or
// the context's deadline says otherwise; the wait is sent to the gateway as
// the call's timeout, and the gateway enforces it across all its attempts.
package gateway

// ProtocolVersion is the gateway protocol this client speaks (the /v1/ paths).
const ProtocolVersion = 1
