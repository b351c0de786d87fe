package verbs

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits of guest-exec's argv, the one argument list a verb takes.
const (
	// MaxArgs is the most arguments an argv may have (at least 1).
	MaxArgs = 16
	// MaxArgLen is the longest one argument may be, in bytes.
	MaxArgLen = 512
	// MaxArgsLen is the most bytes all arguments may have together.
	MaxArgsLen = 4 << 10
	// MaxLineLen bounds a whole SSH command line ParseLine looks at: the
	// verb, a space and the base64url of the argv's JSON (every byte of a
	// MaxArgsLen argv escaped as \u00XX, plus quotes and commas).
	MaxLineLen = MaxLen + 1 + (6*MaxArgsLen+3*MaxArgs+2+2)/3*4
)

// ErrArgs is returned (wrapped) for arguments a verb does not take, an argv
// outside the limits, and a command line whose argv does not decode.
var ErrArgs = errors.New("bad arguments")

// lineEncoding is the SSH line's base64url, unpadded and strict (no
// non-zero trailing bits, no line breaks), so one argv has one line.
var lineEncoding = base64.RawURLEncoding.Strict()

// ValidateArgs checks an argv against the limits: 1 to MaxArgs arguments,
// each at most MaxArgLen bytes and MaxArgsLen in all, valid UTF-8, no NUL,
// and a first argument (the command) that is not empty. The error never
// quotes the arguments.
func ValidateArgs(args []string) error {
	switch {
	case len(args) == 0:
		return fmt.Errorf("%w: an argv needs at least one argument (the command)", ErrArgs)
	case len(args) > MaxArgs:
		return fmt.Errorf("%w: %d arguments, more than %d", ErrArgs, len(args), MaxArgs)
	case args[0] == "":
		return fmt.Errorf("%w: the command (argument 1) is empty", ErrArgs)
	}
	total := 0
	for i, a := range args {
		switch {
		case len(a) > MaxArgLen:
			return fmt.Errorf("%w: argument %d is %d bytes, more than %d", ErrArgs, i+1, len(a), MaxArgLen)
		case !utf8.ValidString(a):
			return fmt.Errorf("%w: argument %d is not valid UTF-8", ErrArgs, i+1)
		case strings.IndexByte(a, 0) >= 0:
			return fmt.Errorf("%w: argument %d holds a NUL byte", ErrArgs, i+1)
		}
		total += len(a)
	}
	if total > MaxArgsLen {
		return fmt.Errorf("%w: the arguments are %d bytes in all, more than %d", ErrArgs, total, MaxArgsLen)
	}
	return nil
}

// CheckArgs checks args for v: a verb that takes arguments needs an argv
// ValidateArgs accepts; every other verb refuses any args, even an empty
// list (args must be nil).
func (v Verb) CheckArgs(args []string) error {
	if !v.TakesArgs {
		if args != nil {
			return fmt.Errorf("%w: %s takes no arguments", ErrArgs, v.Name)
		}
		return nil
	}
	return ValidateArgs(args)
}

// EncodeLine returns the SSH command line of v with args, the exact string
// pve-gate reads from SSH_ORIGINAL_COMMAND: the verb name alone, or for
// guest-exec `guest-exec <base64url of the argv's JSON array>`. It is the
// canonical byte form of a verb and its argv: ParseLine accepts exactly the
// lines EncodeLine makes.
func EncodeLine(v Verb, args []string) (string, error) {
	if _, err := Parse(string(v.Name)); err != nil {
		return "", err
	}
	if err := v.CheckArgs(args); err != nil {
		return "", err
	}
	if !v.TakesArgs {
		return string(v.Name), nil
	}
	b, err := json.Marshal(args)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrArgs, err)
	}
	return string(v.Name) + " " + lineEncoding.EncodeToString(b), nil
}

// ParseLine parses an SSH command line made by EncodeLine and returns the
// verb and its argv (nil for verbs without arguments). A line whose first
// word is not guest-exec must be exactly a verb name (Parse: errors wrap
// ErrUnknown); guest-exec needs exactly one space and its argv, which must
// decode (base64url, a JSON array of strings), pass ValidateArgs and be in
// EncodeLine's canonical form (errors wrap ErrArgs). It does no I/O and
// never quotes the line at length.
func ParseLine(line string) (Verb, []string, error) {
	name, rest, found := strings.Cut(line, " ")
	if name != string(GuestExec) {
		v, err := Parse(line)
		return v, nil, err
	}
	v, err := Parse(name)
	if err != nil {
		return Verb{}, nil, err
	}
	if !found {
		return Verb{}, nil, fmt.Errorf("%w: %s needs its argv after one space", ErrArgs, name)
	}
	if len(line) > MaxLineLen {
		return Verb{}, nil, fmt.Errorf("%w: the command line is %d bytes, more than %d", ErrArgs, len(line), MaxLineLen)
	}
	raw, err := lineEncoding.DecodeString(rest)
	if err != nil {
		return Verb{}, nil, fmt.Errorf("%w: the argv is not base64url (unpadded)", ErrArgs)
	}
	args, err := decodeArgv(raw)
	if err != nil {
		return Verb{}, nil, err
	}
	if err := ValidateArgs(args); err != nil {
		return Verb{}, nil, err
	}
	if canon, _ := EncodeLine(v, args); canon != line {
		return Verb{}, nil, fmt.Errorf("%w: the argv is not in canonical form", ErrArgs)
	}
	return v, args, nil
}

// decodeArgv decodes a JSON array of strings and nothing else.
func decodeArgv(raw []byte) ([]string, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return nil, fmt.Errorf("%w: the argv is not a JSON array", ErrArgs)
	}
	var args []string
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&args); err != nil {
		return nil, fmt.Errorf("%w: the argv is not a JSON array of strings", ErrArgs)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the argv", ErrArgs)
	}
	return args, nil
}
