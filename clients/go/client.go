package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultTimeout is how long a call waits when neither CallOptions.Timeout
// nor the context's deadline says otherwise (the gateway's own default).
const DefaultTimeout = 5 * time.Second

// MaxTimeout is the longest timeout the gateway accepts; longer ones are
// sent as this.
const MaxTimeout = 300 * time.Second

// replyGrace is how much longer than the gateway's timeout the client waits
// for the answer, so that the gateway's own 504 (with its message) arrives
// before the client gives up on a gateway that stopped answering.
const replyGrace = time.Second

// maxResponse bounds the body the client reads from the gateway.
const maxResponse = 64 << 20

// Strategy picks a group's member for a call.
type Strategy string

// The strategies of docs/gateway.md section 3.
const (
	LocalFirst  Strategy = "local_first"
	Random      Strategy = "random"
	RoundRobin  Strategy = "round_robin"
	LeastLoaded Strategy = "least_loaded"
	Hash        Strategy = "hash"
)

// CallOptions are the options of a call; a nil *CallOptions means the defaults.
type CallOptions struct {
	// Timeout for all attempts together. Zero: the context's deadline if it
	// has one, else DefaultTimeout. The context's deadline always applies too.
	Timeout time.Duration
	// Strategy picks the member; "" is the gateway's default, LocalFirst.
	Strategy Strategy
	// Key is the key of the Hash strategy.
	Key string
	// Idempotent lets the gateway retry on another member also when
	// delivery is unknown (a request that may have run).
	Idempotent bool
}

// Client talks to one gateway. It is safe for concurrent use.
type Client struct {
	baseURL string
	token   string
	// HTTP is the client used for every request; replace it (before use)
	// for TLS settings. It must not set a Timeout shorter than your calls'.
	HTTP *http.Client
}

// NewClient returns a client of the gateway at baseURL (such as
// "http://127.0.0.1:8080") with the bearer token. An empty baseURL or token
// is read from SHOAL_GATEWAY_URL or SHOAL_GATEWAY_TOKEN.
func NewClient(baseURL, token string) (*Client, error) {
	if baseURL == "" {
		baseURL = os.Getenv("SHOAL_GATEWAY_URL")
	}
	if token == "" {
		token = os.Getenv("SHOAL_GATEWAY_TOKEN")
	}
	if baseURL == "" {
		return nil, errors.New("shoal gateway: no URL: pass one or set SHOAL_GATEWAY_URL")
	}
	if token == "" {
		return nil, errors.New("shoal gateway: no token: pass one or set SHOAL_GATEWAY_TOKEN")
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("shoal gateway: URL %q is not http(s)://host:port", baseURL)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	return &Client{
		baseURL: strings.TrimRight(baseURL, "/"),
		token:   token,
		HTTP:    &http.Client{Transport: transport},
	}, nil
}

// BaseURL is the gateway's URL this client talks to.
func (c *Client) BaseURL() string { return c.baseURL }

// Call sends request to one member of the group and returns its reply. The
// gateway picks the member (opts.Strategy) and retries on another when the
// failure provably did not start (or, with opts.Idempotent, when delivery is
// unknown). scope "" is "default".
func (c *Client) Call(ctx context.Context, scope, group string, request any, opts *CallOptions) (any, error) {
	return c.call(ctx, "/v1/call/"+seg(scopeOr(scope))+"/"+seg(group), request, opts)
}

// CallPid sends request to one process and returns its reply.
// Only opts.Timeout applies.
func (c *Client) CallPid(ctx context.Context, pid Pid, request any, opts *CallOptions) (any, error) {
	return c.call(ctx, "/v1/call/pid/"+seg(pid.String()), request, opts)
}

func (c *Client) call(ctx context.Context, path string, request any, opts *CallOptions) (any, error) {
	if opts == nil {
		opts = &CallOptions{}
	}
	timeout := opts.Timeout
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if timeout == 0 || left < timeout {
			timeout = left
		}
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if timeout <= 0 {
		return nil, &Error{Kind: KindTimeout, RetrySafe: true, Message: "the deadline passed before the call was sent", Err: context.DeadlineExceeded}
	}
	if timeout > MaxTimeout {
		timeout = MaxTimeout
	}
	if timeout < time.Millisecond { // the header has millisecond precision; 0 is refused
		timeout = time.Millisecond
	}
	header := http.Header{}
	header.Set("Shoal-Timeout", strconv.FormatFloat(timeout.Seconds(), 'f', 3, 64))
	if opts.Strategy != "" {
		header.Set("Shoal-Strategy", string(opts.Strategy))
	}
	if opts.Key != "" {
		header.Set("Shoal-Key", opts.Key)
	}
	if opts.Idempotent {
		header.Set("Shoal-Idempotent", "true")
	}
	return c.do(ctx, http.MethodPost, path, header, request, true, timeout+replyGrace)
}

// Cast sends request to one member of the group without waiting for a reply
// (handle_cast), and returns the member it went to.
func (c *Client) Cast(ctx context.Context, scope, group string, request any) (Pid, error) {
	v, err := c.do(ctx, http.MethodPost, "/v1/cast/"+seg(scopeOr(scope))+"/"+seg(group), nil, request, true, DefaultTimeout)
	if err != nil {
		return Pid{}, err
	}
	if m, ok := v.(map[string]any); ok {
		if pid, ok := m["member"].(Pid); ok {
			return pid, nil
		}
	}
	return Pid{}, &Error{Kind: KindBadResponse, Message: fmt.Sprintf("a cast answered %v, not {\"member\": pid}", v)}
}

// CastPid sends request to one process without waiting (handle_cast).
func (c *Client) CastPid(ctx context.Context, pid Pid, request any) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/cast/pid/"+seg(pid.String()), nil, request, true, DefaultTimeout)
	return err
}

// Send sends a plain message to one process (handled by handle_info).
func (c *Client) Send(ctx context.Context, pid Pid, message any) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/send/pid/"+seg(pid.String()), nil, message, true, DefaultTimeout)
	return err
}

// Members is a group's membership as one gateway node sees it.
type Members struct {
	Scope    string
	Group    string
	Members  []Pid // every member, once per join
	Routable []Pid // the members selection may pick (their node is not suspected)
}

// Members lists the members of a group. scope "" is "default".
func (c *Client) Members(ctx context.Context, scope, group string) (*Members, error) {
	v, err := c.do(ctx, http.MethodGet, "/v1/members/"+seg(scopeOr(scope))+"/"+seg(group), nil, nil, false, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	var out struct {
		Scope    string `json:"scope"`
		Group    string `json:"group"`
		Members  []Pid  `json:"members"`
		Routable []Pid  `json:"routable"`
	}
	if err := Convert(v, &out); err != nil {
		return nil, &Error{Kind: KindBadResponse, Message: err.Error(), Err: err}
	}
	return &Members{Scope: out.Scope, Group: out.Group, Members: out.Members, Routable: out.Routable}, nil
}

// do sends one request and maps its answer: a 2xx body to its value, an
// error answer or a transport failure to an *Error. wait bounds the whole
// exchange on the client's side.
func (c *Client) do(ctx context.Context, method, path string, header http.Header, body any, hasBody bool, wait time.Duration) (any, error) {
	var reader io.Reader
	if hasBody {
		data, err := Marshal(body)
		if err != nil {
			return nil, &Error{Kind: KindBadRequest, RetrySafe: true, Message: err.Error(), Err: err}
		}
		reader = bytes.NewReader(data)
	}
	rctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, c.baseURL+path, reader)
	if err != nil {
		return nil, &Error{Kind: KindBadRequest, RetrySafe: true, Message: err.Error(), Err: err}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if hasBody {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, transportError(ctx, rctx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, transportError(ctx, rctx, err)
	}
	if len(data) > maxResponse {
		return nil, &Error{Status: resp.StatusCode, Kind: KindBadResponse, Message: fmt.Sprintf("an answer over %d bytes", maxResponse)}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, nil
		}
		v, err := Unmarshal(data)
		if err != nil {
			return nil, &Error{Status: resp.StatusCode, Kind: KindBadResponse, Message: err.Error(), Err: err}
		}
		return v, nil
	}
	return nil, answerError(resp.StatusCode, data)
}

// answerError reads the gateway's {"error": {...}} body.
func answerError(status int, data []byte) *Error {
	var body errorBody
	if err := json.Unmarshal(data, &body); err != nil || body.Error == nil || body.Error.Kind == "" {
		text := strings.TrimSpace(string(data))
		if len(text) > 200 {
			text = text[:200] + "..."
		}
		return &Error{Status: status, Kind: KindBadResponse, Message: fmt.Sprintf("HTTP %d without an error body: %s", status, text)}
	}
	b := body.Error
	return &Error{Status: status, Kind: b.Kind, Message: b.Message, RetrySafe: b.RetrySafe, RemoteType: b.RemoteType, Member: b.Member}
}

// transportError maps a failure with no answer from the gateway. ctx is the
// caller's context, rctx the request's (which adds the client's own bound).
func transportError(ctx, rctx context.Context, err error) *Error {
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return &Error{Kind: KindCanceled, Message: "the context was canceled", Err: ctx.Err()}
	case ctx.Err() != nil || rctx.Err() != nil:
		return &Error{Kind: KindTimeout, Message: "no answer from the gateway before the deadline", Err: context.DeadlineExceeded}
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return &Error{Kind: KindConnection, RetrySafe: true, Message: "cannot reach the gateway: " + op.Err.Error(), Err: err}
	}
	return &Error{Kind: KindConnection, Message: "the connection to the gateway broke: " + err.Error(), Err: err}
}

func scopeOr(scope string) string {
	if scope == "" {
		return "default"
	}
	return scope
}

func seg(s string) string { return url.PathEscape(s) }
