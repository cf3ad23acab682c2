package gateway

// Reading the JSON mapping (docs/gateway.md section 2): Unmarshal reads
// integers as int64 (uint64 beyond, float64 beyond that: use msgpack for
// exact big integers) and floats as float64, and refuses what the gateway
// refuses: an unknown "$" form, a "$" key beside others, a malformed typed
// value, a $kv key that is not a string or bytes, nesting beyond MaxDepth.

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Unmarshal reads one JSON value in the gateway's mapping: null, bool,
// string, int64 (or uint64, or float64 when it does not fit), float64,
// []any, map[string]any, Pid, Bin, Crash and KV.
func Unmarshal(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: malformed JSON: %v", ErrBadValue, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: more than one JSON value", ErrBadValue)
	}
	return FromJSON(raw)
}

// FromJSON maps a value encoding/json decoded (with or without UseNumber)
// to its typed form.
func FromJSON(raw any) (any, error) { return fromJSON(raw, 0) }

func fromJSON(raw any, depth int) (any, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrBadValue, MaxDepth)
	}
	switch x := raw.(type) {
	case nil, bool, string, float64:
		return x, nil
	case json.Number:
		return number(x)
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			v, err := fromJSON(item, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case map[string]any:
		return fromObject(x, depth)
	default:
		return nil, fmt.Errorf("%w: unexpected %T", ErrBadValue, raw)
	}
}

func number(n json.Number) (any, error) {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, nil
		}
		if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			return u, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: number %s: %v", ErrBadValue, s, err)
	}
	return f, nil
}

func fromObject(obj map[string]any, depth int) (any, error) {
	for k := range obj {
		if !strings.HasPrefix(k, "$") {
			continue
		}
		if len(obj) != 1 {
			return nil, fmt.Errorf("%w: an object with key %q must have no other key", ErrBadValue, k)
		}
		return fromTyped(k, obj[k], depth)
	}
	return fromPlain(obj, depth)
}

// fromPlain decodes each value of a plain object (a map with string keys).
func fromPlain(obj map[string]any, depth int) (any, error) {
	out := make(map[string]any, len(obj))
	for k, item := range obj {
		v, err := fromJSON(item, depth+1)
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

func fromTyped(key string, body any, depth int) (any, error) {
	bad := func(want string) error {
		return fmt.Errorf("%w: %s takes %s", ErrBadValue, key, want)
	}
	switch key {
	case "$pid":
		parts, ok := body.([]any)
		if !ok || len(parts) != 3 {
			return nil, bad("[node, creation, serial]")
		}
		node, ok := parts[0].(string)
		creation, ok1 := nonNegative(parts[1])
		serial, ok2 := nonNegative(parts[2])
		if !ok || node == "" || len(node) > maxNode || !ok1 || !ok2 {
			return nil, bad("[node, creation, serial]: a string of 1 to 255 bytes and two integers >= 0")
		}
		return Pid{Node: node, Creation: creation, Serial: serial}, nil
	case "$bin":
		text, ok := body.(string)
		if !ok {
			return nil, bad("a hex string")
		}
		b, err := hex.DecodeString(text)
		if err != nil {
			return nil, bad("a hex string")
		}
		return Bin(b), nil
	case "$crash":
		parts, ok := body.([]any)
		if !ok || len(parts) != 3 {
			return nil, bad("[type, message, traceback]")
		}
		var s [3]string
		for i, p := range parts {
			if s[i], ok = p.(string); !ok {
				return nil, bad("[type, message, traceback] as strings")
			}
		}
		return Crash{Type: s[0], Message: s[1], Traceback: s[2]}, nil
	case "$map":
		obj, ok := body.(map[string]any)
		if !ok {
			return nil, bad("an object")
		}
		return fromPlain(obj, depth)
	case "$kv":
		items, ok := body.([]any)
		if !ok {
			return nil, bad("a list of [key, value] pairs")
		}
		kv := make(KV, 0, len(items))
		for _, item := range items {
			pair, ok := item.([]any)
			if !ok || len(pair) != 2 {
				return nil, bad("a list of [key, value] pairs")
			}
			k, err := fromJSON(pair[0], depth+1)
			if err != nil {
				return nil, err
			}
			switch k.(type) {
			case string, Bin:
			default:
				return nil, bad("[key, value] pairs whose keys are strings or bytes")
			}
			v, err := fromJSON(pair[1], depth+1)
			if err != nil {
				return nil, err
			}
			kv = append(kv, Pair{Key: k, Value: v})
		}
		return kv, nil
	default:
		return nil, fmt.Errorf("%w: unknown typed form %q", ErrBadValue, key)
	}
}

func nonNegative(v any) (int64, bool) {
	switch x := v.(type) {
	case json.Number:
		i, err := strconv.ParseInt(string(x), 10, 64)
		return i, err == nil && i >= 0
	case float64:
		if x >= 0 && x == math.Trunc(x) && x < 1<<63 {
			return int64(x), true
		}
	}
	return 0, false
}

// Convert copies a mapped value (such as a Call's reply) into a Go value of
// your own type through encoding/json: a struct, a slice of structs, a
// Pid, ... Typed values inside it (Pid, Bin, Crash) read their typed forms.
func Convert(value any, into any) error {
	data, err := Marshal(value)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, into); err != nil {
		return fmt.Errorf("%w: %v", ErrBadValue, err)
	}
	return nil
}
