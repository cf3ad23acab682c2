package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// fakeGateway answers every request with handle, recording the last request.
func fakeGateway(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, body []byte)) (*Client, chan *http.Request) {
	t.Helper()
	seen := make(chan *http.Request, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen <- r
		handle(w, r, body)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, "sekrit")
	if err != nil {
		t.Fatal(err)
	}
	return c, seen
}

func timeoutSent(t *testing.T, r *http.Request) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(r.Header.Get("Shoal-Timeout"), 64)
	if err != nil {
		t.Fatalf("Shoal-Timeout %q: %v", r.Header.Get("Shoal-Timeout"), err)
	}
	return f
}

func TestACallSendsTheRequestTokenAndOptionsAndReadsTheReply(t *testing.T) {
	c, seen := fakeGateway(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"got": ` + string(body) + `}`))
	})
	opts := &CallOptions{Strategy: Hash, Key: "k1", Idempotent: true}
	reply, err := c.Call(context.Background(), "", "echo", map[string]any{"n": 1}, opts)
	want := map[string]any{"got": map[string]any{"n": int64(1)}}
	if err != nil || !reflect.DeepEqual(reply, want) {
		t.Fatalf("reply %#v, %v", reply, err)
	}
	r := <-seen
	if r.URL.Path != "/v1/call/default/echo" || r.Header.Get("Authorization") != "Bearer sekrit" ||
		r.Header.Get("Shoal-Strategy") != "hash" || r.Header.Get("Shoal-Key") != "k1" ||
		r.Header.Get("Shoal-Idempotent") != "true" || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("request %s %v", r.URL, r.Header)
	}
	if got := timeoutSent(t, r); got != DefaultTimeout.Seconds() {
		t.Fatalf("without a deadline the timeout sent is %v, want the default %v", got, DefaultTimeout.Seconds())
	}
	if _, err := c.CallPid(context.Background(), Pid{"n.1", 2, 3}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if r := <-seen; r.URL.Path != "/v1/call/pid/<n.1.2.3>" {
		t.Fatalf("call/pid path %q", r.URL.Path)
	}
}

func TestTheContextDeadlineIsSentAsTheGatewayTimeout(t *testing.T) {
	c, seen := fakeGateway(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		_, _ = w.Write([]byte(`null`))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.Call(ctx, "s", "g", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := timeoutSent(t, <-seen); got > 2 || got < 1.5 {
		t.Fatalf("a 2 s deadline was sent as timeout %v", got)
	}
	// An explicit timeout shorter than the deadline wins; a longer one does not.
	if _, err := c.Call(ctx, "s", "g", nil, &CallOptions{Timeout: 500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if got := timeoutSent(t, <-seen); got != 0.5 {
		t.Fatalf("timeout 0.5 s was sent as %v", got)
	}
	if _, err := c.Call(ctx, "s", "g", nil, &CallOptions{Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if got := timeoutSent(t, <-seen); got > 2 {
		t.Fatalf("timeout 60 s under a 2 s deadline was sent as %v", got)
	}
	if _, err := c.Call(ctx, "s", "g", nil, &CallOptions{Timeout: time.Microsecond}); err != nil {
		t.Fatal(err)
	}
	if got := timeoutSent(t, <-seen); got != 0.001 {
		t.Fatalf("a timeout under a millisecond was sent as %v, not the least the gateway takes", got)
	}
}

func TestAnErrorAnswerIsAnErrorWithItsKindAndRetryRule(t *testing.T) {
	c, _ := fakeGateway(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte(`{"error": {"kind": "crash", "message": "boom", "retry_safe": false,
			"remote_type": "ValueError", "member": {"$pid": ["n", 1, 2]}}}`))
	})
	_, err := c.Call(context.Background(), "", "crash", "x", nil)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("not an *Error: %v", err)
	}
	want := Error{Status: 502, Kind: KindCrash, Message: "boom", RemoteType: "ValueError", Member: &Pid{"n", 1, 2}}
	if !reflect.DeepEqual(*e, want) || KindOf(err) != "crash" || IsRetrySafe(err) {
		t.Fatalf("got %#v, want %#v", *e, want)
	}
}

func TestAnAnswerWithoutAnErrorBodyIsABadResponse(t *testing.T) {
	c, _ := fakeGateway(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte(`<html>proxy error</html>`))
	})
	_, err := c.Call(context.Background(), "", "g", nil, nil)
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindBadResponse || e.Status != 502 || e.RetrySafe {
		t.Fatalf("got %#v", err)
	}
}

func TestAGatewayThatCannotBeReachedIsRetrySafe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: the connection is refused
	c, _ := NewClient("http://"+addr, "t")
	_, err = c.Call(context.Background(), "", "g", nil, nil)
	if KindOf(err) != KindConnection || !IsRetrySafe(err) {
		t.Fatalf("got %#v", err)
	}
}

func TestADeadlinePassingInTheClientIsATimeout(t *testing.T) {
	release := make(chan struct{})
	c, _ := fakeGateway(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		<-release // a gateway that never answers in time
	})
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Call(ctx, "", "g", nil, nil)
	if KindOf(err) != KindTimeout || IsRetrySafe(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %#v", err)
	}
	_, err = c.Call(ctx, "", "g", nil, nil) // the deadline has passed: nothing is sent
	if KindOf(err) != KindTimeout || !IsRetrySafe(err) {
		t.Fatalf("after the deadline: %#v", err)
	}
}

func TestAValueWithoutJSONFormIsRefusedBeforeSending(t *testing.T) {
	c, seen := fakeGateway(t, func(w http.ResponseWriter, r *http.Request, body []byte) {})
	_, err := c.Call(context.Background(), "", "g", []any{make(chan int)}, nil)
	if KindOf(err) != KindBadRequest || !IsRetrySafe(err) || !errors.Is(err, ErrBadValue) || len(seen) != 0 {
		t.Fatalf("got %#v", err)
	}
}

func TestCastSendAndMembers(t *testing.T) {
	c, seen := fakeGateway(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		switch r.URL.Path {
		case "/v1/cast/default/g":
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"member": {"$pid": ["n", 1, 5]}}`))
		case "/v1/members/s/g":
			_, _ = w.Write([]byte(`{"scope": "s", "group": "g", "members": [{"$pid": ["n", 1, 5]}, {"$pid": ["m", 2, 6]}],
				"routable": [{"$pid": ["n", 1, 5]}]}`))
		default:
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{}`))
		}
	})
	ctx := context.Background()
	if pid, err := c.Cast(ctx, "", "g", "hi"); err != nil || pid != (Pid{"n", 1, 5}) {
		t.Fatalf("cast: %v, %v", pid, err)
	}
	<-seen
	if err := c.Send(ctx, Pid{"n", 1, 5}, "info"); err != nil {
		t.Fatal(err)
	}
	if r := <-seen; r.URL.Path != "/v1/send/pid/<n.1.5>" {
		t.Fatalf("send path %q", r.URL.Path)
	}
	if err := c.CastPid(ctx, Pid{"n", 1, 5}, "c"); err != nil {
		t.Fatal(err)
	}
	<-seen
	m, err := c.Members(ctx, "s", "g")
	want := &Members{Scope: "s", Group: "g", Members: []Pid{{"n", 1, 5}, {"m", 2, 6}}, Routable: []Pid{{"n", 1, 5}}}
	if err != nil || !reflect.DeepEqual(m, want) {
		t.Fatalf("members %#v, %v", m, err)
	}
}

func TestTheURLAndTokenComeFromTheEnvironmentWhenNotGiven(t *testing.T) {
	t.Setenv("SHOAL_GATEWAY_URL", "http://127.0.0.1:1/")
	t.Setenv("SHOAL_GATEWAY_TOKEN", "from-env")
	c, err := NewClient("", "")
	if err != nil || c.BaseURL() != "http://127.0.0.1:1" || c.token != "from-env" {
		t.Fatalf("%v %v", c, err)
	}
	t.Setenv("SHOAL_GATEWAY_TOKEN", "")
	if _, err := NewClient("", ""); err == nil {
		t.Fatal("no token: want an error")
	}
	if _, err := NewClient("ftp://x", "t"); err == nil {
		t.Fatal("an ftp URL: want an error")
	}
}
