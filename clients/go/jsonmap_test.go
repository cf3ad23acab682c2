package gateway

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestTypedValuesWriteTheirTypedForms(t *testing.T) {
	cases := []struct {
		value any
		want  string
	}{
		{Pid{Node: "api-1", Creation: 7, Serial: 42}, `{"$pid":["api-1",7,42]}`},
		{&Pid{Node: "a.b", Creation: 1, Serial: 2}, `{"$pid":["a.b",1,2]}`},
		{Bin{0x00, 0xff}, `{"$bin":"00ff"}`},
		{[]byte("hi"), `{"$bin":"6869"}`},
		{Crash{Type: "ValueError", Message: "boom", Traceback: "tb"}, `{"$crash":["ValueError","boom","tb"]}`},
		{KV{{Key: Bin{1}, Value: "one"}, {Key: "s", Value: int64(2)}}, `{"$kv":[[{"$bin":"01"},"one"],["s",2]]}`},
		{map[string]any{"$x": 1, "y": nil}, `{"$map":{"$x":1,"y":null}}`},
		{map[string]int{"b": 2, "a": 1}, `{"a":1,"b":2}`},
		{[]any{1, 1.0, -1.5, "s<&>", true, nil}, `[1,1.0,-1.5,"s<&>",true,null]`},
		{[2]uint8{1, 2}, `{"$bin":"0102"}`},
		{float32(0.5), `0.5`},
		{1e21, `1e+21`},
		{uint64(math.MaxUint64), `18446744073709551615`},
		{struct {
			P Pid `json:"p"`
		}{Pid{"n", 1, 2}}, `{"p":{"$pid":["n",1,2]}}`},
		{json.RawMessage(`{"raw": 1}`), `{"raw": 1}`},
	}
	for _, c := range cases {
		got, err := Marshal(c.value)
		if err != nil || string(got) != c.want {
			t.Errorf("Marshal(%#v) = %s, %v; want %s", c.value, got, err, c.want)
		}
	}
}

func TestTypedFormsReadAsTypedValues(t *testing.T) {
	cases := []struct {
		json string
		want any
	}{
		{`{"$pid":["api-1",7,42]}`, Pid{Node: "api-1", Creation: 7, Serial: 42}},
		{`{"$bin":"00ff"}`, Bin{0x00, 0xff}},
		{`{"$crash":["ValueError","boom","tb"]}`, Crash{Type: "ValueError", Message: "boom", Traceback: "tb"}},
		{`{"$map":{"$x":1}}`, map[string]any{"$x": int64(1)}},
		{`{"$map":{"key":{"$bin":"00ff"},"n":-1.5}}`, map[string]any{"key": Bin{0, 0xff}, "n": -1.5}},
		{`{"$kv":[[{"$bin":"01"},"one"],["s",null]]}`, KV{{Bin{1}, "one"}, {"s", nil}}},
		{`[1, 1.0, 9223372036854775807, 18446744073709551615, 1e400]`, nil},
		{`{"a":{"b":[{"$pid":["n",0,0]}]}}`, map[string]any{"a": map[string]any{"b": []any{Pid{"n", 0, 0}}}}},
	}
	for _, c := range cases {
		got, err := Unmarshal([]byte(c.json))
		if c.want == nil {
			if err == nil {
				t.Errorf("Unmarshal(%s) = %#v; want an error (1e400 overflows)", c.json, got)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Unmarshal(%s) = %#v, %v; want %#v", c.json, got, err, c.want)
		}
	}
	got, err := Unmarshal([]byte(`[1, 1.0, 9223372036854775807, 18446744073709551615]`))
	want := []any{int64(1), 1.0, int64(math.MaxInt64), uint64(math.MaxUint64)}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("integers and floats: got %#v, %v; want %#v", got, err, want)
	}
}

func TestBadTypedFormsAreRejected(t *testing.T) {
	for _, bad := range []string{
		`{"$nope": 1}`,
		`{"$pid": ["n", 1]}`,
		`{"$pid": ["", 1, 2]}`,
		`{"$pid": ["n", -1, 2]}`,
		`{"$pid": ["n", 1.5, 2]}`,
		`{"$bin": "0g"}`,
		`{"$bin": 12}`,
		`{"$crash": ["a", "b"]}`,
		`{"$map": []}`,
		`{"$kv": [[1]]}`,
		`{"$kv": [[1, "one"]]}`,
		`{"$pid": ["` + strings.Repeat("n", 256) + `", 1, 2]}`,
		strings.Repeat("[", MaxDepth+2) + strings.Repeat("]", MaxDepth+2),
		`{"$pid": ["n", 1, 2], "other": 1}`,
		`{"a": 1, "$b": 2}`,
		`[1, {"$nope": 2}]`,
		`{not json`,
		`1 2`,
	} {
		if v, err := Unmarshal([]byte(bad)); !errors.Is(err, ErrBadValue) {
			t.Errorf("Unmarshal(%s) = %#v, %v; want ErrBadValue", bad, v, err)
		}
	}
	deep := []any{}
	for i := 0; i < MaxDepth+1; i++ {
		deep = []any{deep}
	}
	for _, bad := range []any{math.NaN(), math.Inf(1), make(chan int), []any{func() {}}, map[int]string{1: "a"},
		KV{{Key: int64(1), Value: "one"}}, deep} {
		if data, err := Marshal(bad); !errors.Is(err, ErrBadValue) {
			t.Errorf("Marshal(%T) = %s, %v; want ErrBadValue", bad, data, err)
		}
	}
}

func TestValuesSurviveARoundTrip(t *testing.T) {
	value := []any{
		nil, true, "x", int64(-3), 2.5, 1.0,
		Pid{"node.with.dots", 3, 9}, Bin("bytes"), Crash{"E", "m", "t"},
		map[string]any{"$dollar": KV{{Bin{1}, []any{}}}, "plain": map[string]any{}},
	}
	data, err := Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Unmarshal(data)
	if err != nil || !reflect.DeepEqual(back, value) {
		t.Fatalf("round trip of %s: %#v, %v", data, back, err)
	}
}

func TestPidsParseAsPrinted(t *testing.T) {
	p := Pid{Node: "api.eu-1", Creation: 17, Serial: 4}
	for _, text := range []string{p.String(), "api.eu-1.17.4", " <api.eu-1.17.4> "} {
		if got, err := ParsePid(text); err != nil || got != p {
			t.Errorf("ParsePid(%q) = %v, %v", text, got, err)
		}
	}
	for _, bad := range []string{"", "<a.1>", "a.1.x", "<.1.2>", "a.-1.2", "a.+1.2", "<a.1.2"} {
		if got, err := ParsePid(bad); !errors.Is(err, ErrBadValue) {
			t.Errorf("ParsePid(%q) = %v, %v; want ErrBadValue", bad, got, err)
		}
	}
}

func TestConvertFillsYourOwnTypes(t *testing.T) {
	v, err := Unmarshal([]byte(`{"who": {"$pid": ["n", 1, 2]}, "data": {"$bin": "ff"}, "n": 3, "kv": {"$kv": [[{"$bin": "01"}, 1]]}}`))
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Who  Pid
		Data Bin
		N    int
		KV   KV
	}
	if err := Convert(v, &out); err != nil || out.Who != (Pid{"n", 1, 2}) || string(out.Data) != "\xff" || out.N != 3 ||
		!reflect.DeepEqual(out.KV, KV{{Bin{1}, int64(1)}}) {
		t.Fatalf("Convert: %+v, %v", out, err)
	}
	var pid Pid
	if err := Convert("not a pid", &pid); !errors.Is(err, ErrBadValue) {
		t.Fatalf("Convert of a string into a Pid: %v", err)
	}
}
