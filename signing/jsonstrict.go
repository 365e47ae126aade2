package signing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// parseObject decodes one JSON object into its members with exact-case names.
// It rejects anything but a single object, duplicate member names (RFC 7515
// §4 and RFC 7517 §4 require rejection or last-wins; we reject) and trailing
// data. Member values are returned undecoded.
func parseObject(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("json: %v: %w", err, ErrMalformed)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("json: not an object: %w", ErrMalformed)
	}
	m := make(map[string]json.RawMessage, 8)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("json: %v: %w", err, ErrMalformed)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("json: member name: %w", ErrMalformed)
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("json: duplicate member %q: %w", name, ErrMalformed)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("json: member %q: %v: %w", name, err, ErrMalformed)
		}
		m[name] = v
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, fmt.Errorf("json: unterminated object: %w", ErrMalformed)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("json: trailing data: %w", ErrMalformed)
	}
	return m, nil
}

// stringMember decodes an optional string member; present reports whether
// it was there. A present member of another JSON type is ErrMalformed.
func stringMember(m map[string]json.RawMessage, name string) (s string, present bool, err error) {
	raw, ok := m[name]
	if !ok {
		return "", false, nil
	}
	if len(raw) == 0 || raw[0] != '"' {
		return "", true, fmt.Errorf("member %q is not a string: %w", name, ErrMalformed)
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", true, fmt.Errorf("member %q: %v: %w", name, err, ErrMalformed)
	}
	return s, true, nil
}
