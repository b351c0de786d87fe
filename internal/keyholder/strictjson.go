package keyholder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// Errors of decodeStrict, checked with errors.Is. Each is a 400 with its own
// reason code (see reasonOfJSON).
var (
	// ErrMalformedJSON: the body is not one JSON value of the right shape.
	ErrMalformedJSON = errors.New("malformed JSON body")
	// ErrUnknownField: an object holds a key the request type does not have.
	ErrUnknownField = errors.New("unknown field")
	// ErrDuplicateKey: an object holds the same key twice. encoding/json
	// keeps the last one, so a reader that keeps the first would see
	// another request than the keyholder.
	ErrDuplicateKey = errors.New("duplicate key")
	// ErrWrongCaseKey: a key matches a field only when case is ignored
	// ("Actor" for "actor"). encoding/json folds case; the wire names are
	// exact.
	ErrWrongCaseKey = errors.New("key in the wrong case")
	// ErrTrailingData: more follows the JSON value.
	ErrTrailingData = errors.New("trailing data after the JSON value")
)

// maxJSONDepth bounds the nesting decodeStrict walks; the request types are
// two levels deep.
const maxJSONDepth = 8

// decodeStrict decodes the JSON value in b into v (a pointer to a struct)
// and refuses what encoding/json lets through: unknown fields, duplicate
// keys and keys in another case than the field's json name, at every depth
// of v's type, and trailing data. Every route of keyholder.sock that takes
// a JSON body decodes it with this.
func decodeStrict(b []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("%w: decode target is not a pointer", ErrMalformedJSON)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := checkValue(dec, rv.Type().Elem(), "", 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return ErrTrailingData
	}
	// The shape is checked; let encoding/json fill v (and check types).
	dec = json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformedJSON, err)
	}
	return nil
}

// checkValue reads one JSON value from dec, checking object keys against
// t where t is a struct (or a pointer, slice or map leading to one).
func checkValue(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	if depth > maxJSONDepth {
		return fmt.Errorf("%w: nested deeper than %d", ErrMalformedJSON, maxJSONDepth)
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformedJSON, err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar; encoding/json checks its type
	}
	switch d {
	case '{':
		return checkObject(dec, t, path, depth)
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := checkValue(dec, elem, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return fmt.Errorf("%w: %v", ErrMalformedJSON, err)
		}
		return nil
	}
	return fmt.Errorf("%w: unexpected %v", ErrMalformedJSON, d)
}

// checkObject reads an object's members after its '{'.
func checkObject(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	var fields map[string]reflect.Type
	var elem reflect.Type
	switch {
	case t != nil && t.Kind() == reflect.Struct:
		fields = jsonFields(t)
	case t != nil && t.Kind() == reflect.Map:
		elem = t.Elem()
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrMalformedJSON, err)
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("%w: object key is not a string", ErrMalformedJSON)
		}
		where := quoteKey(path, key)
		if seen[key] {
			return fmt.Errorf("%w: %s", ErrDuplicateKey, where)
		}
		seen[key] = true
		next := elem
		if fields != nil {
			ft, ok := fields[key]
			if !ok {
				for name := range fields {
					if strings.EqualFold(name, key) {
						return fmt.Errorf("%w: %s (the field is %q)", ErrWrongCaseKey, where, name)
					}
				}
				return fmt.Errorf("%w: %s", ErrUnknownField, where)
			}
			next = ft
		}
		if err := checkValue(dec, next, where, depth+1); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformedJSON, err)
	}
	return nil
}

// jsonFields maps the exact json names of t's exported fields to their
// types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// maxQuotedKey bounds how much of a peer-supplied key an error quotes.
const maxQuotedKey = 64

// quoteKey names a key for an error message: bounded and quoted.
func quoteKey(path, key string) string {
	if len(key) > maxQuotedKey {
		key = key[:maxQuotedKey] + "…"
	}
	if path == "" {
		return fmt.Sprintf("%q", key)
	}
	return fmt.Sprintf("%s.%q", path, key)
}
