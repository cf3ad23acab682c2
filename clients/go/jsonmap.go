package gateway

// The JSON mapping of docs/gateway.md section 2: its typed values, and
// writing them (decode.go reads them).
//
// Marshal writes the JSON itself rather than through encoding/json so that
// a float stays a float (1.0 is written "1.0", never "1", which the other
// side would read as an integer) and so that a map key starting with "$" is
// always wrapped in {"$map": ...}.

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// ErrBadValue is wrapped by every error of the JSON mapping: a value Marshal
// cannot write (NaN, a channel, ...) or JSON Unmarshal cannot map (an unknown
// "$" form, a malformed pid).
var ErrBadValue = errors.New("bad typed value")

// Pid is the address of one shoal process: its node, the node's incarnation
// (creation) and the process's serial number. JSON: {"$pid": [node, creation, serial]}.
type Pid struct {
	Node     string
	Creation int64
	Serial   int64
}

// String prints the pid as shoal does: <node.creation.serial>.
func (p Pid) String() string {
	return fmt.Sprintf("<%s.%d.%d>", p.Node, p.Creation, p.Serial)
}

// ParsePid reads a pid as String prints it; the angle brackets are optional
// and the node name may contain dots.
func ParsePid(text string) (Pid, error) {
	body := strings.TrimSpace(text)
	bad := fmt.Errorf("%w: pid %q is not <node.creation.serial>", ErrBadValue, text)
	if strings.HasPrefix(body, "<") || strings.HasSuffix(body, ">") {
		if len(body) < 2 || !strings.HasPrefix(body, "<") || !strings.HasSuffix(body, ">") {
			return Pid{}, bad
		}
		body = body[1 : len(body)-1]
	}
	i := strings.LastIndexByte(body, '.')
	if i < 0 {
		return Pid{}, bad
	}
	j := strings.LastIndexByte(body[:i], '.')
	if j <= 0 {
		return Pid{}, bad
	}
	creation, err1 := strconv.ParseInt(body[j+1:i], 10, 64)
	serial, err2 := strconv.ParseInt(body[i+1:], 10, 64)
	if err1 != nil || err2 != nil || creation < 0 || serial < 0 || strings.ContainsAny(body[j+1:], "+-") {
		return Pid{}, bad
	}
	return Pid{Node: body[:j], Creation: creation, Serial: serial}, nil
}

// MarshalJSON writes {"$pid": [node, creation, serial]}.
func (p Pid) MarshalJSON() ([]byte, error) { return Marshal(p) }

// UnmarshalJSON reads {"$pid": [node, creation, serial]}.
func (p *Pid) UnmarshalJSON(data []byte) error { return unmarshalTyped(data, p) }

// Bin is a byte string. JSON: {"$bin": "<hex>"}. A []byte is written the same way.
type Bin []byte

// MarshalJSON writes {"$bin": "<hex>"}.
func (b Bin) MarshalJSON() ([]byte, error) { return Marshal(b) }

// UnmarshalJSON reads {"$bin": "<hex>"}.
func (b *Bin) UnmarshalJSON(data []byte) error { return unmarshalTyped(data, b) }

// Crash is the exit reason of a process whose handler raised: the
// exception's type name, its message and its traceback.
// JSON: {"$crash": [type, message, traceback]}.
type Crash struct {
	Type      string
	Message   string
	Traceback string
}

// MarshalJSON writes {"$crash": [type, message, traceback]}.
func (c Crash) MarshalJSON() ([]byte, error) { return Marshal(c) }

// UnmarshalJSON reads {"$crash": [type, message, traceback]}.
func (c *Crash) UnmarshalJSON(data []byte) error { return unmarshalTyped(data, c) }

// KV is a map whose keys are not all strings (each key is a string or
// bytes, the wire's rule), as ordered pairs.
// JSON: {"$kv": [[key, value], ...]}.
type KV []Pair

// Pair is one entry of a KV.
type Pair struct {
	Key   any
	Value any
}

// MarshalJSON writes {"$kv": [[key, value], ...]}.
func (kv KV) MarshalJSON() ([]byte, error) { return Marshal(kv) }

// UnmarshalJSON reads {"$kv": [[key, value], ...]}.
func (kv *KV) UnmarshalJSON(data []byte) error { return unmarshalTyped(data, kv) }

func unmarshalTyped(data []byte, into any) error {
	v, err := Unmarshal(data)
	if err != nil {
		return err
	}
	got := reflect.ValueOf(v)
	target := reflect.ValueOf(into).Elem()
	if !got.IsValid() || got.Type() != target.Type() {
		return fmt.Errorf("%w: %s is not a %s", ErrBadValue, bytes.TrimSpace(data), target.Type())
	}
	target.Set(got)
	return nil
}

// Marshal writes v as JSON in the gateway's mapping. Besides the types the
// mapping names it accepts any integer or float type, []byte (as Bin),
// slices and arrays (as lists), maps with string keys (wrapped in $map when
// a key starts with "$"), pointers, json.RawMessage (written as is), and
// other types (structs) through encoding/json.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := encode(&buf, v, 0); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// MaxDepth is the deepest nesting of arrays and maps the mapping accepts,
// both ways (the gateway's own bound); a cyclic value fails at it.
const MaxDepth = 256

// maxNode is the longest node name of a pid.
const maxNode = 255

func encode(buf *bytes.Buffer, v any, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("%w: nested deeper than %d (a cycle?)", ErrBadValue, MaxDepth)
	}
	switch x := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		buf.WriteString(strconv.FormatBool(x))
	case string:
		writeString(buf, x)
	case int:
		buf.WriteString(strconv.FormatInt(int64(x), 10))
	case int64:
		buf.WriteString(strconv.FormatInt(x, 10))
	case float64:
		return writeFloat(buf, x, 64)
	case Pid:
		buf.WriteString(`{"$pid":[`)
		writeString(buf, x.Node)
		fmt.Fprintf(buf, ",%d,%d]}", x.Creation, x.Serial)
	case *Pid:
		if x == nil {
			buf.WriteString("null")
			return nil
		}
		return encode(buf, *x, depth)
	case Bin:
		writeBin(buf, x)
	case []byte:
		writeBin(buf, x)
	case Crash:
		buf.WriteString(`{"$crash":[`)
		writeString(buf, x.Type)
		buf.WriteByte(',')
		writeString(buf, x.Message)
		buf.WriteByte(',')
		writeString(buf, x.Traceback)
		buf.WriteString("]}")
	case KV:
		buf.WriteString(`{"$kv":[`)
		for i, p := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			switch p.Key.(type) {
			case string, Bin, []byte:
			default:
				return fmt.Errorf("%w: a KV key is a string or bytes, not %T", ErrBadValue, p.Key)
			}
			buf.WriteByte('[')
			if err := encode(buf, p.Key, depth+1); err != nil {
				return err
			}
			buf.WriteByte(',')
			if err := encode(buf, p.Value, depth+1); err != nil {
				return err
			}
			buf.WriteByte(']')
		}
		buf.WriteString("]}")
	case []any:
		return encodeList(buf, len(x), func(i int) any { return x[i] }, depth)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		return encodeStrMap(buf, keys, func(k string) any { return x[k] }, depth)
	case json.RawMessage:
		if !json.Valid(x) {
			return fmt.Errorf("%w: json.RawMessage is not valid JSON", ErrBadValue)
		}
		buf.Write(x)
	default:
		return encodeReflect(buf, reflect.ValueOf(v), depth)
	}
	return nil
}

func encodeReflect(buf *bytes.Buffer, rv reflect.Value, depth int) error {
	if _, ok := rv.Interface().(json.Marshaler); ok {
		return encodeStd(buf, rv.Interface())
	}
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		buf.WriteString(strconv.FormatInt(rv.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		buf.WriteString(strconv.FormatUint(rv.Uint(), 10))
	case reflect.Float32:
		return writeFloat(buf, rv.Float(), 32)
	case reflect.Float64:
		return writeFloat(buf, rv.Float(), 64)
	case reflect.Bool:
		buf.WriteString(strconv.FormatBool(rv.Bool()))
	case reflect.String:
		writeString(buf, rv.String())
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			buf.WriteString("null")
			return nil
		}
		return encode(buf, rv.Elem().Interface(), depth+1)
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			buf.WriteString("null")
			return nil
		}
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			b := make([]byte, rv.Len())
			reflect.Copy(reflect.ValueOf(b), rv)
			writeBin(buf, b)
			return nil
		}
		return encodeList(buf, rv.Len(), func(i int) any { return rv.Index(i).Interface() }, depth)
	case reflect.Map:
		if rv.IsNil() {
			buf.WriteString("null")
			return nil
		}
		if rv.Type().Key().Kind() == reflect.String {
			keys := make([]string, 0, rv.Len())
			for _, k := range rv.MapKeys() {
				keys = append(keys, k.String())
			}
			kt := rv.Type().Key()
			return encodeStrMap(buf, keys, func(k string) any {
				return rv.MapIndex(reflect.ValueOf(k).Convert(kt)).Interface()
			}, depth)
		}
		return fmt.Errorf("%w: a map key is a string, not %s (use KV for bytes keys)", ErrBadValue, rv.Type().Key())
	case reflect.Struct:
		return encodeStd(buf, rv.Interface())
	default:
		return fmt.Errorf("%w: a %s has no JSON form", ErrBadValue, rv.Type())
	}
	return nil
}

// encodeStd writes a struct (or a type with its own MarshalJSON) through
// encoding/json; the typed values inside it still write their typed forms.
func encodeStd(buf *bytes.Buffer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadValue, err)
	}
	buf.Write(data)
	return nil
}

func encodeList(buf *bytes.Buffer, n int, at func(int) any, depth int) error {
	buf.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			buf.WriteByte(',')
		}
		if err := encode(buf, at(i), depth+1); err != nil {
			return err
		}
	}
	buf.WriteByte(']')
	return nil
}

func encodeStrMap(buf *bytes.Buffer, keys []string, at func(string) any, depth int) error {
	sort.Strings(keys)
	wrap := false
	for _, k := range keys {
		if strings.HasPrefix(k, "$") {
			wrap = true
		}
	}
	if wrap {
		buf.WriteString(`{"$map":`)
	}
	buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeString(buf, k)
		buf.WriteByte(':')
		if err := encode(buf, at(k), depth+1); err != nil {
			return err
		}
	}
	buf.WriteByte('}')
	if wrap {
		buf.WriteByte('}')
	}
	return nil
}

func writeString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)           // a string always encodes
	buf.Truncate(buf.Len() - 1) // Encode's trailing newline
}

func writeBin(buf *bytes.Buffer, b []byte) {
	buf.WriteString(`{"$bin":"`)
	buf.WriteString(hex.EncodeToString(b))
	buf.WriteString(`"}`)
}

func writeFloat(buf *bytes.Buffer, f float64, bits int) error {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("%w: %v has no JSON form (use msgpack)", ErrBadValue, f)
	}
	s := strconv.FormatFloat(f, 'g', -1, bits)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	buf.WriteString(s)
	return nil
}
