package presence

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits of the operators file.
const (
	// MaxOperatorsFile bounds the file.
	MaxOperatorsFile = 1 << 20
	// MaxOperators bounds the credentials it may hold.
	MaxOperators = 256
	// MaxNameLen bounds an operator's name.
	MaxNameLen = 64
)

// ErrOperators: the operators file (or a line for it) is malformed.
var ErrOperators = errors.New("malformed operators file")

// Credential is one line of the operators file: an operator's passkey.
type Credential struct {
	// Name is the operator, as audit lines name him.
	Name string
	// ID is the credential id the authenticator chose.
	ID []byte
	// Key is the credential's public key.
	Key PublicKey
}

// Line returns the credential as an operators-file line:
// `<name> <credential id, base64url> <COSE_Key, base64url>`.
func (c Credential) Line() string {
	return c.Name + " " + Encode(c.ID) + " " + Encode(c.Key.COSE)
}

// CheckName reports whether s may name an operator: 1 to 64 bytes of
// letters, digits and ". _ @ + -" (it is one field of a space-separated line
// and appears in audit lines).
func CheckName(s string) error {
	if s == "" || len(s) > MaxNameLen {
		return fmt.Errorf("an operator's name is 1 to %d characters", MaxNameLen)
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("._@+-", r):
		default:
			return fmt.Errorf("an operator's name holds only letters, digits and . _ @ + - (not %q)", r)
		}
	}
	return nil
}

// ParseLine reads one operators-file line (no comment, no blank).
func ParseLine(line string) (Credential, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return Credential{}, fmt.Errorf("%w: want `<name> <credential id> <public key>`, got %d fields", ErrOperators, len(f))
	}
	if err := CheckName(f[0]); err != nil {
		return Credential{}, fmt.Errorf("%w: %w", ErrOperators, err)
	}
	id, err := Decode(f[1])
	if err != nil || len(id) == 0 || len(id) > MaxCredentialID {
		return Credential{}, fmt.Errorf("%w: credential id is not 1 to %d bytes of base64url", ErrOperators, MaxCredentialID)
	}
	kb, err := Decode(f[2])
	if err != nil {
		return Credential{}, fmt.Errorf("%w: public key is not base64url", ErrOperators)
	}
	key, err := ParsePublicKey(kb)
	if err != nil {
		return Credential{}, fmt.Errorf("%w: %w", ErrOperators, err)
	}
	return Credential{Name: f[0], ID: id, Key: key}, nil
}

// ParseOperators reads an operators file: one credential per line, `#`
// starts a comment line, blank lines are skipped. A malformed line, a
// repeated credential id, or more than MaxOperators credentials is an error
// naming the line: a file that half parses is refused whole.
func ParseOperators(r io.Reader) ([]Credential, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxOperatorsFile+1))
	if err != nil {
		return nil, fmt.Errorf("read operators file: %w", err)
	}
	if len(b) > MaxOperatorsFile {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrOperators, MaxOperatorsFile)
	}
	var creds []Credential
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), MaxOperatorsFile)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c, err := ParseLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if prev, ok := seen[string(c.ID)]; ok {
			return nil, fmt.Errorf("line %d: %w: credential id already on line %d", n, ErrOperators, prev)
		}
		seen[string(c.ID)] = n
		if creds = append(creds, c); len(creds) > MaxOperators {
			return nil, fmt.Errorf("line %d: %w: more than %d credentials", n, ErrOperators, MaxOperators)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOperators, err)
	}
	return creds, nil
}
