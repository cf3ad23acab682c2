package gateway

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"
)

// The conformance vectors of the gateway (docs/gateway.md sections 2 and 4),
// shared by every client.
const vectorsPath = "../../tests/pure/vectors/gateway_vectors.json"

type vectors struct {
	Version int `json:"version"`
	Mapping []struct {
		Name   string          `json:"name"`
		JSON   json.RawMessage `json:"json"`
		OneWay bool            `json:"one_way"`
	} `json:"mapping"`
	InvalidJSON []struct {
		Name string `json:"name"`
		Body string `json:"body"`
	} `json:"invalid_json"`
	Errors []struct {
		Kind      string          `json:"kind"`
		Status    int             `json:"status"`
		RetrySafe *bool           `json:"retry_safe"`
		Example   json.RawMessage `json:"example"`
	} `json:"errors"`
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	data, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatalf("the gateway's vectors: %v", err)
	}
	var v vectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if v.Version != ProtocolVersion || len(v.Mapping) == 0 || len(v.InvalidJSON) == 0 || len(v.Errors) == 0 {
		t.Fatalf("vectors of version %d with %d/%d/%d entries", v.Version, len(v.Mapping), len(v.InvalidJSON), len(v.Errors))
	}
	return v
}

// generic is JSON text as encoding/json reads it: the same document written
// with another key order or spacing compares equal.
func generic(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	return v
}

func TestEveryMappingVectorReadsAndWritesBackTheSameForm(t *testing.T) {
	for _, vec := range loadVectors(t).Mapping {
		value, err := Unmarshal(vec.JSON)
		if err != nil {
			t.Errorf("%s: Unmarshal(%s): %v", vec.Name, vec.JSON, err)
			continue
		}
		back, err := Marshal(value)
		if err != nil {
			t.Errorf("%s: Marshal(%#v): %v", vec.Name, value, err)
			continue
		}
		if !reflect.DeepEqual(generic(t, back), generic(t, vec.JSON)) {
			t.Errorf("%s: %s written back as %s", vec.Name, vec.JSON, back)
		}
		if again, err := Unmarshal(back); err != nil || !reflect.DeepEqual(again, value) {
			t.Errorf("%s: %#v read back as %#v, %v", vec.Name, value, again, err)
		}
	}
}

func TestEveryInvalidBodyOfTheVectorsIsRefused(t *testing.T) {
	for _, vec := range loadVectors(t).InvalidJSON {
		if v, err := Unmarshal([]byte(vec.Body)); !errors.Is(err, ErrBadValue) {
			t.Errorf("%s: Unmarshal(%s) = %#v, %v; want ErrBadValue", vec.Name, vec.Body, v, err)
		}
	}
}

var knownKinds = map[string]bool{
	KindBadRequest: true, KindUnauthorized: true, KindForbidden: true, KindNoMembers: true, KindNoProc: true,
	KindNotFound: true, KindMethodNotAllowed: true, KindTooLarge: true, KindUnsupportedMediaType: true,
	KindRejected: true, KindCrash: true, KindExited: true, KindUnencodable: true, KindInternal: true,
	KindOverloaded: true, KindNodeDown: true, KindUnavailable: true, KindTimeout: true,
}

func TestEveryErrorOfTheVectorsBecomesAnErrorWithItsKindStatusAndRetryRule(t *testing.T) {
	for _, vec := range loadVectors(t).Errors {
		if !knownKinds[vec.Kind] {
			t.Errorf("kind %q has no Kind constant", vec.Kind)
		}
		var example struct {
			Error struct {
				RetrySafe  bool   `json:"retry_safe"`
				RemoteType string `json:"remote_type"`
				Member     *Pid   `json:"member"`
			} `json:"error"`
		}
		if err := json.Unmarshal(vec.Example, &example); err != nil {
			t.Fatal(err)
		}
		e := answerError(vec.Status, vec.Example)
		if e.Kind != vec.Kind || e.Status != vec.Status || e.RetrySafe != example.Error.RetrySafe ||
			e.RemoteType != example.Error.RemoteType || !reflect.DeepEqual(e.Member, example.Error.Member) || e.Message == "" {
			t.Errorf("%s: %s read as %#v", vec.Kind, vec.Example, e)
		}
		if vec.RetrySafe != nil && *vec.RetrySafe != e.RetrySafe {
			t.Errorf("%s: retry_safe %v in the table, %v in the answer", vec.Kind, *vec.RetrySafe, e.RetrySafe)
		}
	}
}
