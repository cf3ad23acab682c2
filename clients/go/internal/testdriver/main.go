// Command testdriver is the program the repository's pytest suite
// (tests/clients/test_go.py) drives against a real shoal cluster. It reads
// SHOAL_GATEWAY_URL and SHOAL_GATEWAY_TOKEN and writes one line per result:
//
//	testdriver call SCOPE GROUP JSON   "reply JSON", or "error KIND RETRY_SAFE REMOTE_TYPE|null STATUS"
//	testdriver member SCOPE GROUP N    "registered ID PID"; "call JSON" per call, each
//	                                   answered ["go", request] (after {"sleep": seconds}
//	                                   if the request has it); on SIGTERM it closes
//	                                   (draining) and writes "drained N"
//	testdriver mapping                 per JSON document on stdin: "refused", or
//	                                   "ok<TAB>the value with its types<TAB>the value written back"
//	testdriver tour                    members, CallPid, Cast, CastPid, Send and four errors on
//	                                   the cluster's "echo" and "slow" groups, one line each
//	testdriver errors                  per "STATUS<TAB>BODY" on stdin, the error a call gets when
//	                                   the gateway answers that: "KIND RETRY_SAFE REMOTE_TYPE STATUS MEMBER"
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"shoal.dev/gateway"
)

var outMu sync.Mutex

func say(format string, args ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Printf(format+"\n", args...)
}

func mustJSON(v any) string {
	data, err := gateway.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%q", "unencodable: "+err.Error())
	}
	return string(data)
}

func sayError(err error) {
	var e *gateway.Error
	if !errors.As(err, &e) {
		say("error not-a-gateway-error %v", err)
		return
	}
	remote := e.RemoteType
	if remote == "" {
		remote = "null"
	}
	say("error %s %t %s %d", e.Kind, e.RetrySafe, remote, e.Status)
}

// tagged is a value with its type made explicit (tests/clients/client_support.py's tag).
func tagged(v any) any {
	switch x := v.(type) {
	case nil:
		return []any{"null"}
	case bool:
		return []any{"bool", x}
	case int64:
		return []any{"int", x}
	case uint64:
		return []any{"int", x}
	case float64:
		return []any{"float", x}
	case string:
		return []any{"str", x}
	case gateway.Bin:
		return []any{"bin", fmt.Sprintf("%x", []byte(x))}
	case gateway.Pid:
		return []any{"pid", x.Node, x.Creation, x.Serial}
	case gateway.Crash:
		return []any{"crash", x.Type, x.Message, x.Traceback}
	case []any:
		items := make([]any, len(x))
		for i, item := range x {
			items[i] = tagged(item)
		}
		return []any{"list", items}
	case map[string]any:
		entries := make([]any, 0, len(x))
		for k, item := range x {
			entries = append(entries, []any{tagged(k), tagged(item)})
		}
		return []any{"map", entries}
	case gateway.KV:
		entries := make([]any, 0, len(x))
		for _, p := range x {
			entries = append(entries, []any{tagged(p.Key), tagged(p.Value)})
		}
		return []any{"map", entries}
	}
	return []any{"unknown", fmt.Sprintf("%T", v)}
}

func mapping() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<16), 1<<24)
	for in.Scan() {
		v, err := gateway.Unmarshal(in.Bytes())
		if err != nil {
			say("refused")
			continue
		}
		back, err := gateway.Marshal(v)
		if err != nil {
			say("unencodable %v", err)
			continue
		}
		say("ok\t%s\t%s", mustJSON(tagged(v)), back)
	}
}

// errorAnswers calls a local server that answers each call with one of the
// given answers, and says what error the client makes of it.
func errorAnswers() {
	var answers [][2]string
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<16), 1<<24)
	for in.Scan() {
		status, body, _ := strings.Cut(in.Text(), "\t")
		answers = append(answers, [2]string{status, body})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			i, _ := strconv.Atoi(r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:])
			status, _ := strconv.Atoi(answers[i][0])
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(answers[i][1]))
		}))
	}()
	client, err := gateway.NewClient("http://"+ln.Addr().String(), "t")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for i := range answers {
		_, err := client.Call(context.Background(), "default", strconv.Itoa(i), nil, nil)
		var e *gateway.Error
		if !errors.As(err, &e) {
			say("no error: %v", err)
			continue
		}
		remote, member := e.RemoteType, "null"
		if remote == "" {
			remote = "null"
		}
		if e.Member != nil {
			member = e.Member.String()
		}
		say("%s %t %s %d %s", e.Kind, e.RetrySafe, remote, e.Status, member)
	}
}

func tour(client *gateway.Client) {
	ctx := context.Background()
	m, err := client.Members(ctx, "default", "echo")
	if err != nil {
		sayError(err)
		return
	}
	say("members %d %d", len(m.Members), len(m.Routable))
	first := m.Members[0]
	reply, err := client.CallPid(ctx, first, "hi", nil)
	say("callPid %s %s", mustJSON(reply), okOr(err))
	to, err := client.Cast(ctx, "default", "echo", "c")
	say("cast %t %s", to == m.Members[0] || to == m.Members[1], okOr(err))
	say("castPid %s", okOr(client.CastPid(ctx, first, "c")))
	say("send %s", okOr(client.Send(ctx, first, "i")))
	failures := []struct {
		name string
		call func() error
	}{
		{"dead", func() error {
			_, err := client.CallPid(ctx, gateway.Pid{Node: first.Node, Creation: first.Creation, Serial: 999999}, "x", nil)
			return err
		}},
		{"empty", func() error { _, err := client.Call(ctx, "default", "nobody", 1, nil); return err }},
		{"slow", func() error {
			_, err := client.Call(ctx, "default", "slow", 2.0, &gateway.CallOptions{Timeout: 500 * time.Millisecond})
			return err
		}},
		{"tiny", func() error {
			_, err := client.Call(ctx, "default", "slow", 2.0, &gateway.CallOptions{Timeout: time.Nanosecond})
			return err
		}},
	}
	for _, f := range failures {
		var e *gateway.Error
		if err := f.call(); errors.As(err, &e) {
			say("%s %s %t %d", f.name, e.Kind, e.RetrySafe, e.Status)
		} else {
			say("%s no error: %v", f.name, err)
		}
	}
	// The context's deadline alone bounds the call (the gateway is told it too).
	deadline, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	_, err = client.Call(deadline, "default", "slow", 2.0, nil)
	say("deadline %s %t", gateway.KindOf(err), gateway.IsRetrySafe(err))
}

func okOr(err error) string {
	if err != nil {
		return err.Error()
	}
	return "ok"
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "mapping" {
		mapping()
		return
	}
	if len(os.Args) == 2 && os.Args[1] == "errors" {
		errorAnswers()
		return
	}
	if len(os.Args) == 2 && os.Args[1] == "tour" {
		client, err := gateway.NewClient("", "")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		tour(client)
		return
	}
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: testdriver mapping | errors | tour | call SCOPE GROUP JSON | member SCOPE GROUP CONCURRENCY")
		os.Exit(2)
	}
	client, err := gateway.NewClient("", "")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	cmd, scope, group, arg := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	switch cmd {
	case "call":
		request, err := gateway.Unmarshal([]byte(arg))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		reply, err := client.Call(context.Background(), scope, group, request, nil)
		if err != nil {
			sayError(err)
			return
		}
		say("reply %s", mustJSON(reply))
	case "member":
		concurrency, err := strconv.Atoi(arg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		echo := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (any, error) {
			say("%s %s", req.Kind, mustJSON(req.Body))
			if m, ok := req.Body.(map[string]any); ok {
				if seconds, ok := m["sleep"].(float64); ok {
					select {
					case <-time.After(time.Duration(seconds * float64(time.Second))):
					case <-ctx.Done():
						return nil, ctx.Err()
					}
				}
			}
			return []any{"go", req.Body}, nil
		})
		m, err := client.ServeMember(context.Background(), scope, group, echo, concurrency)
		if err != nil {
			sayError(err)
			os.Exit(1)
		}
		say("registered %s %s", m.ID, m.Pid)
		select {
		case <-stop:
			drained, err := m.Shutdown(context.Background())
			if err != nil {
				sayError(err)
				os.Exit(1)
			}
			say("drained %d", drained)
		case <-m.Done():
			sayError(m.Err())
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown command", cmd)
		os.Exit(2)
	}
}
