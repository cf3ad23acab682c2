package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type registration struct {
	Scope         string `json:"scope"`
	Group         string `json:"group"`
	CallbackURL   string `json:"callback_url"`
	CallbackToken string `json:"callback_token"`
	Concurrency   int    `json:"concurrency"`
	Name          string `json:"name"`
}

// fakeRegistrar accepts one registration with a stream, which it keeps open
// until the client closes it or endStream is closed.
type fakeRegistrar struct {
	registered   chan registration
	streamClosed chan struct{}
	endStream    chan struct{}
	deleted      chan string
}

func newFakeRegistrar(t *testing.T) (*Client, *fakeRegistrar) {
	f := &fakeRegistrar{
		registered: make(chan registration, 1), streamClosed: make(chan struct{}),
		endStream: make(chan struct{}), deleted: make(chan string, 1),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/members":
			var reg registration
			if err := json.NewDecoder(r.Body).Decode(&reg); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, ": hello\n\nevent: registered\ndata: {\"id\": \"r1\", \"pid\": {\"$pid\": [\"gw\", 1, 9]}}\n\n")
			w.(http.Flusher).Flush()
			f.registered <- reg
			select {
			case <-r.Context().Done():
				close(f.streamClosed)
			case <-f.endStream:
			}
		case r.Method == http.MethodDelete:
			f.deleted <- r.URL.Path
			_, _ = w.Write([]byte(`{"drained": 2}`))
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, "sekrit")
	if err != nil {
		t.Fatal(err)
	}
	return c, f
}

func postCallback(t *testing.T, reg registration, token, kind, body string, deadlineMs string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, reg.CallbackURL, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Shoal-Kind", kind)
	req.Header.Set("Shoal-Member", "<gw.1.9>")
	req.Header.Set("Shoal-Caller", "<py.3.4>")
	req.Header.Set("Shoal-Registration", "r1")
	if deadlineMs != "" {
		req.Header.Set("Shoal-Deadline-Ms", deadlineMs)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	v, _ := Unmarshal(data)
	obj, _ := v.(map[string]any)
	if obj == nil {
		obj = map[string]any{"value": v}
	}
	return resp.StatusCode, obj
}

func TestAMemberServesCallsAndDrainsOnClose(t *testing.T) {
	c, f := newFakeRegistrar(t)
	seen := make(chan *Request, 8)
	handler := HandlerFunc(func(ctx context.Context, req *Request) (any, error) {
		seen <- req
		switch req.Body {
		case "reject":
			return nil, Reject("no %s", "thanks")
		case "fail":
			return nil, errors.New("boom")
		case "panic":
			panic("kaboom")
		case "deadline":
			dl, ok := ctx.Deadline()
			return ok && time.Until(dl) > 0 && time.Until(dl) <= 3*time.Second, nil
		}
		return map[string]any{"echo": req.Body}, nil
	})
	m, err := c.ServeMember(context.Background(), "", "prices", handler, 4)
	if err != nil {
		t.Fatal(err)
	}
	reg := <-f.registered
	if m.ID != "r1" || m.Pid != (Pid{"gw", 1, 9}) || reg.Scope != "default" || reg.Group != "prices" ||
		reg.Concurrency != 4 || !strings.HasPrefix(reg.CallbackURL, "http://127.0.0.1:") || len(reg.CallbackToken) < 32 {
		t.Fatalf("member %+v, registration %+v", m, reg)
	}
	tok := reg.CallbackToken

	status, body := postCallback(t, reg, tok, "call", `{"$bin": "00"}`, "2000")
	if status != 200 || fmt.Sprint(body["echo"]) != fmt.Sprint(Bin{0}) {
		t.Fatalf("call: %d %v", status, body)
	}
	req := <-seen
	if req.Kind != "call" || *req.Caller != (Pid{"py", 3, 4}) || req.Member != m.Pid || req.Registration != "r1" || req.Deadline.IsZero() {
		t.Fatalf("request %+v", req)
	}
	if status, body = postCallback(t, reg, tok, "call", `"deadline"`, "3000"); status != 200 || body["value"] != true {
		t.Fatalf("the handler's context has no deadline from Shoal-Deadline-Ms: %d %v", status, body)
	}
	<-seen
	if status, body = postCallback(t, reg, tok, "call", `"reject"`, ""); status != 422 ||
		fmt.Sprint(body["error"]) != "map[message:no thanks]" {
		t.Fatalf("reject: %d %v", status, body)
	}
	<-seen
	if status, body = postCallback(t, reg, tok, "call", `"fail"`, ""); status != 500 ||
		fmt.Sprint(body["error"]) != "map[message:boom type:errors.errorString]" {
		t.Fatalf("fail: %d %v", status, body)
	}
	<-seen
	if status, body = postCallback(t, reg, tok, "call", `"panic"`, ""); status != 500 ||
		fmt.Sprint(body["error"]) != "map[message:kaboom type:panic]" {
		t.Fatalf("panic: %d %v", status, body)
	}
	<-seen
	if status, _ = postCallback(t, reg, tok, "cast", `"c"`, ""); status != 200 {
		t.Fatalf("cast: %d", status)
	}
	if req = <-seen; req.Kind != "cast" || req.Body != "c" {
		t.Fatalf("cast request %+v", req)
	}
	if status, _ = postCallback(t, reg, "not-the-token", "call", `1`, ""); status != 401 || len(seen) != 0 {
		t.Fatalf("a callback without the registration's token: %d", status)
	}

	drained, err := m.Shutdown(context.Background())
	if err != nil || drained != 2 || <-f.deleted != "/v1/members/r1" {
		t.Fatalf("shutdown: %d, %v", drained, err)
	}
	<-f.streamClosed
	<-m.Done()
	if m.Err() != nil {
		t.Fatalf("Err after Shutdown: %v", m.Err())
	}
	if _, err := http.Post(reg.CallbackURL, "application/json", bytes.NewReader([]byte("1"))); err == nil {
		t.Fatal("the callback server still answers after Shutdown")
	}
}

func TestAMemberWhoseStreamEndsStopsAndSaysWhy(t *testing.T) {
	c, f := newFakeRegistrar(t)
	m, err := c.ServeMember(context.Background(), "s", "g", HandlerFunc(func(context.Context, *Request) (any, error) {
		return nil, nil
	}), 0)
	if err != nil {
		t.Fatal(err)
	}
	if reg := <-f.registered; reg.Concurrency != 0 {
		t.Fatalf("concurrency 0 must be left to the gateway: %+v", reg)
	}
	close(f.endStream)
	select {
	case <-m.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the member did not stop when its stream ended")
	}
	if KindOf(m.Err()) != KindConnection {
		t.Fatalf("Err: %v", m.Err())
	}
}

func TestAMemberStopsWhenItsContextEnds(t *testing.T) {
	c, f := newFakeRegistrar(t)
	ctx, cancel := context.WithCancel(context.Background())
	m, err := c.ServeMember(ctx, "s", "g", HandlerFunc(func(context.Context, *Request) (any, error) {
		return nil, nil
	}), 1)
	if err != nil {
		t.Fatal(err)
	}
	<-f.registered
	cancel()
	if got := <-f.deleted; got != "/v1/members/r1" {
		t.Fatalf("deleted %q", got)
	}
	<-m.Done()
}

func TestARefusedRegistrationIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error": {"kind": "bad_request", "message": "concurrency: 1 to 1000", "retry_safe": true}}`))
	}))
	defer srv.Close()
	c, _ := NewClient(srv.URL, "t")
	_, err := c.ServeMember(context.Background(), "s", "g", HandlerFunc(func(context.Context, *Request) (any, error) {
		return nil, nil
	}), 5000)
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 || e.Kind != KindBadRequest || !strings.Contains(e.Message, "concurrency") {
		t.Fatalf("got %#v", err)
	}
}

func TestTheOptionsNameTheProxyAndTheCallbackURL(t *testing.T) {
	c, f := newFakeRegistrar(t)
	m, err := c.ServeMember(context.Background(), "s", "g", HandlerFunc(func(context.Context, *Request) (any, error) {
		return nil, nil
	}), 2, WithName("prices-1"), WithListenAddr("127.0.0.1:0"), WithCallbackURL("http://10.0.0.5:9000/cb"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if reg := <-f.registered; reg.Name != "prices-1" || reg.CallbackURL != "http://10.0.0.5:9000/cb" {
		t.Fatalf("registration %+v", reg)
	}
}
