package devstack

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// key is a generated Ed25519 key and, when written, its private key file.
type key struct {
	signer ssh.Signer
	path   string
}

// newKey generates an Ed25519 key; with a name it also writes the private
// key, OpenSSH format, mode 0600, as dir/name.
func newKey(dir, name string) (key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return key{}, fmt.Errorf("generate key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return key{}, fmt.Errorf("signer: %w", err)
	}
	k := key{signer: signer}
	if name == "" {
		return k, nil
	}
	block, err := ssh.MarshalPrivateKey(priv, "breakglass devstack "+name)
	if err != nil {
		return key{}, fmt.Errorf("marshal %s key: %w", name, err)
	}
	k.path = filepath.Join(dir, name)
	if err := os.WriteFile(k.path, pem.EncodeToMemory(block), 0o600); err != nil {
		return key{}, fmt.Errorf("write %s key: %w", name, err)
	}
	return k, nil
}

// knownHostsLine pins pub for addr in OpenSSH's known_hosts format.
func knownHostsLine(addr string, pub ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(addr)}, pub) + "\n"
}
