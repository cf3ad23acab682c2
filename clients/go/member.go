package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A member registration (docs/gateway.md section 5): ServeMember runs a
// net/http callback server, registers its URL with the gateway and keeps the
// registration's event stream open. The gateway's proxy process is in the
// group while the stream is open; if this process dies, the stream closes
// and the proxy leaves the group. Shutdown (or Close, or the end of the
// context given to ServeMember) deletes the registration, which drains the
// calls in flight, then stops the callback server.

// maxCallback bounds the request body the callback server reads.
const maxCallback = 64 << 20

// Request is one message the gateway forwards to a member handler.
type Request struct {
	// Kind is "call", "cast" or "info" (a plain message sent to the pid).
	Kind string
	// Body is the request, in the JSON mapping.
	Body any
	// Deadline is when the caller gives up (calls only; zero otherwise).
	// The handler's context carries it too.
	Deadline time.Time
	// Caller is the caller's pid, when it has one.
	Caller *Pid
	// Member is the pid of the proxy process that stands for this member.
	Member Pid
	// Registration is the registration's id.
	Registration string
}

// Handler serves the calls, casts and infos sent to a member.
type Handler interface {
	// ServeShoal returns the reply to a call (ignored for casts and infos).
	// An error returned by Reject makes the caller get KindRejected; any
	// other error, or a panic, makes the caller get KindCrash with the
	// error's Go type as its RemoteType.
	ServeShoal(ctx context.Context, req *Request) (any, error)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, req *Request) (any, error)

// ServeShoal calls f(ctx, req).
func (f HandlerFunc) ServeShoal(ctx context.Context, req *Request) (any, error) { return f(ctx, req) }

// MemberOption sets an optional part of a registration.
type MemberOption func(*memberConfig)

type memberConfig struct {
	listen      string
	name        string
	callbackURL string
}

// WithListenAddr sets the address of the callback server (default
// "127.0.0.1:0", a free loopback port).
func WithListenAddr(addr string) MemberOption { return func(c *memberConfig) { c.listen = addr } }

// WithCallbackURL sets the URL the gateway calls back, when it reaches the
// callback server by another address than the one it listens on (default
// "http://LISTEN_ADDRESS/shoal"); any path is served.
func WithCallbackURL(url string) MemberOption { return func(c *memberConfig) { c.callbackURL = url } }

// WithName registers the gateway's proxy process under a local name.
func WithName(name string) MemberOption { return func(c *memberConfig) { c.name = name } }

// Member is a running registration.
type Member struct {
	// ID is the registration's id; Pid the gateway's proxy process in the group.
	ID  string
	Pid Pid

	client   *Client
	server   *http.Server
	stop     context.CancelFunc // ends the registration stream
	done     chan struct{}
	once     sync.Once
	mu       sync.Mutex
	err      error // why the registration ended; nil after Shutdown
	shutdown bool
	drained  int
}

// ServeMember serves handler as a member of the group: it starts a callback
// server, registers it with the gateway (at most concurrency calls at a time,
// 1 to 1,000; 0 means the gateway's default, 8) and returns once the proxy
// process has joined the group. When ctx ends, the member shuts down
// gracefully, as Shutdown does.
func (c *Client) ServeMember(ctx context.Context, scope, group string, handler Handler, concurrency int, opts ...MemberOption) (*Member, error) {
	cfg := memberConfig{listen: "127.0.0.1:0"}
	for _, o := range opts {
		o(&cfg)
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return nil, &Error{Kind: KindConnection, RetrySafe: true, Message: "cannot listen for callbacks: " + err.Error(), Err: err}
	}
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		ln.Close()
		return nil, err
	}
	m := &Member{client: c, done: make(chan struct{})}
	cb := &callbacks{handler: handler, token: "Bearer " + hex.EncodeToString(secret)}
	m.server = &http.Server{Handler: cb, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = m.server.Serve(ln) }()

	if cfg.callbackURL == "" {
		cfg.callbackURL = "http://" + ln.Addr().String() + "/shoal"
	}
	reg := map[string]any{
		"scope":          scopeOr(scope),
		"group":          group,
		"callback_url":   cfg.callbackURL,
		"callback_token": hex.EncodeToString(secret),
	}
	if concurrency != 0 {
		reg["concurrency"] = concurrency
	}
	if cfg.name != "" {
		reg["name"] = cfg.name
	}
	streamCtx, stop := context.WithCancel(context.Background())
	m.stop = stop
	events, err := c.openStream(ctx, streamCtx, reg)
	if err == nil {
		err = m.awaitRegistered(ctx, events)
	}
	if err != nil {
		stop()
		_ = m.server.Close()
		return nil, err
	}
	go m.follow(events)
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), MaxTimeout)
			defer cancel()
			_, _ = m.Shutdown(sctx)
		case <-m.done:
		}
	}()
	return m, nil
}

// event is one server-sent event.
type event struct {
	name string
	data []byte
}

// openStream posts the registration and returns its events as they arrive.
// ctx bounds the wait for the answer's headers; streamCtx is the stream's life.
func (c *Client) openStream(ctx, streamCtx context.Context, reg map[string]any) (<-chan event, error) {
	body, err := Marshal(reg)
	if err != nil {
		return nil, &Error{Kind: KindBadRequest, RetrySafe: true, Message: err.Error(), Err: err}
	}
	req, err := http.NewRequestWithContext(streamCtx, http.MethodPost, c.baseURL+"/v1/members", bytes.NewReader(body))
	if err != nil {
		return nil, &Error{Kind: KindBadRequest, RetrySafe: true, Message: err.Error(), Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	wait, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	type answer struct {
		resp *http.Response
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := c.HTTP.Do(req)
		got <- answer{resp, err}
	}()
	var a answer
	select {
	case a = <-got:
	case <-wait.Done():
		go func() { // the request is still under way: end it, release its answer
			if a := <-got; a.resp != nil {
				a.resp.Body.Close()
			}
		}()
		return nil, transportError(ctx, wait, wait.Err())
	}
	if a.err != nil {
		return nil, transportError(ctx, wait, a.err)
	}
	if a.resp.StatusCode != http.StatusOK {
		defer a.resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(a.resp.Body, 1<<20))
		return nil, answerError(a.resp.StatusCode, data)
	}
	events := make(chan event, 4)
	go readEvents(a.resp.Body, events)
	return events, nil
}

// readEvents parses a text/event-stream into events; the channel closes at
// the end of the stream.
func readEvents(body io.ReadCloser, out chan<- event) {
	defer close(out)
	defer body.Close()
	scan := bufio.NewScanner(body)
	scan.Buffer(make([]byte, 4096), 1<<20)
	var ev event
	for scan.Scan() {
		line := scan.Text()
		switch {
		case line == "":
			if ev.name != "" || ev.data != nil {
				out <- ev
			}
			ev = event{}
		case strings.HasPrefix(line, ":"): // a keep-alive comment
		case strings.HasPrefix(line, "event:"):
			ev.name = strings.TrimSpace(line[len("event:"):])
		case strings.HasPrefix(line, "data:"):
			if ev.data != nil {
				ev.data = append(ev.data, '\n')
			}
			ev.data = append(ev.data, strings.TrimPrefix(line[len("data:"):], " ")...)
		}
	}
}

func (m *Member) awaitRegistered(ctx context.Context, events <-chan event) error {
	wait, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return &Error{Kind: KindConnection, Message: "the registration stream ended before the member was registered"}
			}
			if ev.name != "registered" {
				continue
			}
			v, err := Unmarshal(ev.data)
			obj, _ := v.(map[string]any)
			id, _ := obj["id"].(string)
			pid, okPid := obj["pid"].(Pid)
			if err != nil || id == "" || !okPid {
				return &Error{Kind: KindBadResponse, Message: fmt.Sprintf("a registered event without id and pid: %s", ev.data)}
			}
			m.ID, m.Pid = id, pid
			return nil
		case <-wait.Done():
			return transportError(ctx, wait, wait.Err())
		}
	}
}

// follow reads the stream until it ends: by Shutdown, or because the
// gateway went away (then the registration is over: Err says why).
func (m *Member) follow(events <-chan event) {
	for range events {
	}
	m.mu.Lock()
	closing := m.shutdown
	if !closing && m.err == nil {
		m.err = &Error{Kind: KindConnection, Message: "the registration stream closed: the gateway's proxy has left the group"}
	}
	m.mu.Unlock()
	if !closing { // else Shutdown finishes once the drain is over
		m.finish()
	}
}

func (m *Member) finish() {
	m.once.Do(func() {
		m.stop()
		sctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
		defer cancel()
		_ = m.server.Shutdown(sctx)
		close(m.done)
	})
}

// Done is closed when the member has stopped: after Shutdown, or when the
// registration stream ended on its own (see Err).
func (m *Member) Done() <-chan struct{} { return m.done }

// Err is why the member stopped: nil after a Shutdown, an *Error when the
// gateway ended the registration.
func (m *Member) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Shutdown stops the member gracefully: it deletes the registration (the
// proxy leaves the group and lets its calls in flight finish, up to their
// deadlines), then closes the stream and the callback server. It returns how
// many calls were drained. ctx bounds the wait.
func (m *Member) Shutdown(ctx context.Context) (int, error) {
	m.mu.Lock()
	if m.shutdown {
		m.mu.Unlock()
		<-m.done
		return m.drained, nil
	}
	m.shutdown = true
	m.mu.Unlock()
	wait := MaxTimeout + replyGrace
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	v, err := m.client.do(ctx, http.MethodDelete, "/v1/members/"+seg(m.ID), nil, nil, false, wait)
	drained := 0
	if obj, ok := v.(map[string]any); ok {
		if n, ok := obj["drained"].(int64); ok {
			drained = int(n)
		}
	}
	if err != nil && KindOf(err) == KindNotFound {
		err = nil // the registration had already ended
	}
	m.mu.Lock()
	m.drained = drained
	m.mu.Unlock()
	m.finish()
	return drained, err
}

// Close is Shutdown without a bound other than the gateway's longest call
// timeout.
func (m *Member) Close() error {
	_, err := m.Shutdown(context.Background())
	return err
}

// callbacks is the callback server's handler.
type callbacks struct {
	handler Handler
	token   string
}

func (cb *callbacks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(cb.token)) != 1 {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxCallback+1))
	if err != nil || len(data) > maxCallback {
		writeCrash(w, "BadCallbackBody", "the request body could not be read whole")
		return
	}
	body, err := Unmarshal(data)
	if err != nil {
		writeCrash(w, "BadCallbackBody", err.Error())
		return
	}
	req := &Request{Kind: r.Header.Get("Shoal-Kind"), Body: body, Registration: r.Header.Get("Shoal-Registration")}
	if req.Kind == "" {
		req.Kind = "call"
	}
	if p, err := ParsePid(r.Header.Get("Shoal-Member")); err == nil {
		req.Member = p
	}
	if p, err := ParsePid(r.Header.Get("Shoal-Caller")); err == nil {
		req.Caller = &p
	}
	ctx := r.Context()
	if ms, err := strconv.ParseInt(r.Header.Get("Shoal-Deadline-Ms"), 10, 64); err == nil {
		req.Deadline = time.Now().Add(time.Duration(ms) * time.Millisecond)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, req.Deadline)
		defer cancel()
	}
	reply, err := serve(ctx, cb.handler, req)
	if err != nil {
		var rej *Rejection
		if errors.As(err, &rej) {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": map[string]any{"message": rej.Message}})
			return
		}
		writeCrash(w, typeName(err), err.Error())
		return
	}
	if req.Kind != "call" {
		reply = nil
	}
	out, err := Marshal(reply)
	if err != nil {
		writeCrash(w, "UnencodableReply", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// serve runs the handler, turning a panic into a crash.
func serve(ctx context.Context, h Handler, req *Request) (reply any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{value: p}
		}
	}()
	return h.ServeShoal(ctx, req)
}

type panicError struct{ value any }

func (p *panicError) Error() string { return fmt.Sprint(p.value) }

func typeName(err error) string {
	if _, ok := err.(*panicError); ok {
		return "panic"
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", err), "*")
}

func writeCrash(w http.ResponseWriter, typ, message string) {
	writeJSON(w, http.StatusInternalServerError, map[string]any{"error": map[string]any{"type": typ, "message": message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, _ := Marshal(v) // built from strings only: always encodes
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}
