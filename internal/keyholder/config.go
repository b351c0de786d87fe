package keyholder

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"breakglass/internal/presence"
	"breakglass/internal/verbs"
)

// Defaults applied by New to zero fields of Config.
const (
	DefaultPort        = 22
	DefaultVerbTimeout = 120 * time.Second
	// MaxVerbTimeout bounds Config.VerbTimeout.
	MaxVerbTimeout = time.Hour
	// maxKeyFile bounds a private key file; OpenSSH keys are a few KiB.
	maxKeyFile = 64 << 10
)

// Start-up errors, checked with errors.Is. A missing key file wraps
// fs.ErrNotExist.
var (
	// ErrKeyPermissions: a key file is readable or writable by group or
	// others (mode wider than 0600; see keyModeOK for the Kubernetes Secret
	// case), or is not a regular file.
	ErrKeyPermissions = errors.New("key file permissions too open")
	// ErrBadKey: a key file does not hold an unencrypted private key.
	ErrBadKey = errors.New("not a usable private key")
	// ErrKnownHostsWritable: known_hosts is writable by group or others,
	// who could then pin a host of their choosing.
	ErrKnownHostsWritable = errors.New("known_hosts writable by group or others")
	// ErrNoKnownHost: known_hosts pins no key for a configured host.
	ErrNoKnownHost = errors.New("no known_hosts entry")
	// ErrHostNotIP: a configured host is a name, not an IP address.
	ErrHostNotIP = errors.New("host must be an IP address")
	// ErrNoOperators: presence is required but the operators file holds no
	// credential and enrollment is closed.
	ErrNoOperators = errors.New("no operators enrolled")
	// ErrConfig: any other invalid Config field.
	ErrConfig = errors.New("invalid keyholder config")
)

// Host is one SSH destination.
type Host struct {
	// Host is an IP address (never a name: it must work with DNS down).
	Host string
	// Port is the SSH port; zero means 22.
	Port int
	// User is the login user. Required.
	User string
}

// Addr returns host:port.
func (h Host) Addr() string { return net.JoinHostPort(h.Host, strconv.Itoa(h.port())) }

func (h Host) port() int {
	if h.Port == 0 {
		return DefaultPort
	}
	return h.Port
}

// Config configures the keyholder. Its zero value is refused by New: the
// key paths, hosts, users and known_hosts have no safe default here (the
// binary supplies the README's defaults). Zero VMID, VerbTimeout, Logger,
// Registerer and Now take safe defaults.
type Config struct {
	// PVE is the Proxmox host the verbs run on.
	PVE Host
	// PVEKeyPath is the private key for PVE (mode 0600 or narrower).
	PVEKeyPath string
	// DevVM is the devvm the agent signs logins for; checked at start-up
	// so a missing known_hosts entry is found before anyone needs it.
	DevVM Host
	// DevVMKeyPath is the devvm's private key (mode 0600 or narrower).
	DevVMKeyPath string
	// KnownHostsPath is the OpenSSH known_hosts file pinning both hosts
	// (`[host]:port` for ports other than 22).
	KnownHostsPath string
	// VMID is the Proxmox VM the verbs act on; zero means 102. It is
	// reported in answers; pve-gate has its own.
	VMID int
	// VerbTimeout bounds one verb, from dialling to the remote exit; zero
	// means DefaultVerbTimeout.
	VerbTimeout time.Duration
	// Logger receives the audit lines (JSON in the binary); nil means none.
	Logger hclog.Logger
	// Registerer is where the keyholder's metrics are registered and
	// Gatherer what GET /metrics serves; both nil means a private registry.
	// The agent's metrics go on the same registry so one scrape has both.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// Presence is whether mutating verbs need an operator's passkey: the
	// zero value is presence.ModeRequired; presence.ModeOff only when the
	// binary was told so explicitly.
	Presence presence.Mode
	// RPID and Origins are the WebAuthn relying party id and the accepted
	// origins (required unless Presence is off).
	RPID    string
	Origins []string
	// OperatorsPath is the operators file. With presence required it must
	// hold at least one credential, unless Enroll is set. An enrollment
	// appends its line here when the file is writable.
	OperatorsPath string
	// Enroll opens enrollment at start with a one-time code written to
	// Logger (docs/security.md: enrollment is an install-time act).
	Enroll bool
}

// loaded is what New reads from the files Config names.
type loaded struct {
	pveSigner   ssh.Signer
	devvmSigner ssh.Signer
	hostKeys    ssh.HostKeyCallback
	pveAlgos    []string
	operators   []presence.Credential
}

// check validates the plain fields of cfg.
func (cfg Config) check() error {
	for _, h := range []struct {
		what string
		h    Host
	}{{"PVE", cfg.PVE}, {"devvm", cfg.DevVM}} {
		if h.h.Host == "" {
			return fmt.Errorf("%w: %s host is empty", ErrConfig, h.what)
		}
		if net.ParseIP(h.h.Host) == nil {
			return fmt.Errorf("%s host %q: %w", h.what, h.h.Host, ErrHostNotIP)
		}
		if h.h.Port < 0 || h.h.Port > 65535 {
			return fmt.Errorf("%w: %s port %d", ErrConfig, h.what, h.h.Port)
		}
		if h.h.User == "" {
			return fmt.Errorf("%w: %s user is empty", ErrConfig, h.what)
		}
	}
	switch {
	case cfg.PVEKeyPath == "":
		return fmt.Errorf("%w: PVE key path is empty", ErrConfig)
	case cfg.DevVMKeyPath == "":
		return fmt.Errorf("%w: devvm key path is empty", ErrConfig)
	case cfg.KnownHostsPath == "":
		return fmt.Errorf("%w: known_hosts path is empty", ErrConfig)
	case cfg.VerbTimeout < 0 || cfg.VerbTimeout > MaxVerbTimeout:
		return fmt.Errorf("%w: verb timeout %v (0 < timeout <= %v)", ErrConfig, cfg.VerbTimeout, MaxVerbTimeout)
	case cfg.Registerer == nil && cfg.Gatherer != nil, cfg.Registerer != nil && cfg.Gatherer == nil:
		return fmt.Errorf("%w: give both Registerer and Gatherer, or neither", ErrConfig)
	}
	switch cfg.Presence {
	case "", presence.ModeRequired, presence.ModeOff:
	default:
		return fmt.Errorf("%w: presence %q (required or off)", ErrConfig, cfg.Presence)
	}
	if cfg.Presence != presence.ModeOff && cfg.OperatorsPath == "" {
		return fmt.Errorf("%w: operators file path is empty", ErrConfig)
	}
	if cfg.VMID != 0 {
		if err := verbs.CheckVMID(cfg.VMID); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	return nil
}

// load reads and checks the key files and known_hosts.
func (cfg Config) load() (*loaded, error) {
	pve, err := loadKey("PVE key", cfg.PVEKeyPath)
	if err != nil {
		return nil, err
	}
	devvm, err := loadKey("devvm key", cfg.DevVMKeyPath)
	if err != nil {
		return nil, err
	}
	info, err := os.Stat(cfg.KnownHostsPath)
	if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %w", cfg.KnownHostsPath, err)
	}
	if perm := info.Mode().Perm(); perm&0o022 != 0 {
		return nil, fmt.Errorf("known_hosts %s: %w: mode %04o; run chmod go-w %s", cfg.KnownHostsPath, ErrKnownHostsWritable, perm, cfg.KnownHostsPath)
	}
	cb, err := knownhosts.New(cfg.KnownHostsPath)
	if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %w", cfg.KnownHostsPath, err)
	}
	pveKeys, err := pinnedKeys(cb, cfg.KnownHostsPath, "PVE", cfg.PVE)
	if err != nil {
		return nil, err
	}
	if _, err := pinnedKeys(cb, cfg.KnownHostsPath, "devvm", cfg.DevVM); err != nil {
		return nil, err
	}
	ld := &loaded{pveSigner: pve, devvmSigner: devvm, hostKeys: cb, pveAlgos: hostKeyAlgorithms(pveKeys)}
	if cfg.Presence != presence.ModeOff {
		if ld.operators, err = loadOperators(cfg.OperatorsPath, cfg.Enroll); err != nil {
			return nil, err
		}
	}
	return ld, nil
}

// loadOperators reads the operators file. A missing or empty one is
// refused unless enrollment is open, which is how the first passkey comes.
func loadOperators(path string, enroll bool) ([]presence.Credential, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && enroll {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("operators file %s: %w", path, err)
	}
	defer f.Close()
	creds, err := presence.ParseOperators(f)
	if err != nil {
		return nil, fmt.Errorf("operators file %s: %w", path, err)
	}
	if len(creds) == 0 && !enroll {
		return nil, fmt.Errorf("operators file %s: %w: no operator's passkey is enrolled, so no mutating verb could ever run; enroll one (BREAKGLASS_ENROLL=open) or set BREAKGLASS_PRESENCE=off explicitly", path, ErrNoOperators)
	}
	return creds, nil
}

// keyModeOK reports whether a key file's mode keeps the key private: no
// access for group or others (0600, 0400), or the one exception of a
// Kubernetes Secret volume under the pod's fsGroup, which the kubelet
// mounts root-owned, read-only, mode 0440 for the group it shares only with
// the pod's own containers (deploy/k8s mounts the Secret in the keyholder
// alone; the deploy tests check it). Nothing writable by group or others,
// nothing readable by others, is ever accepted.
func keyModeOK(perm fs.FileMode, owner int) bool {
	if perm&0o077 == 0 {
		return true
	}
	return owner == 0 && perm&^0o440 == 0 && perm&0o400 != 0
}

// fileOwner returns the uid owning the file, or -1 when unknown.
func fileOwner(info fs.FileInfo) int {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// loadKey reads the private key at path, refusing a file that group or
// others could read or write. Errors name the file and never include its
// content.
func loadKey(what, path string) (ssh.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	defer f.Close()
	// Stat the open file, not the path, so what is checked is what is read.
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s: %w: not a regular file", what, path, ErrKeyPermissions)
	}
	if perm := info.Mode().Perm(); !keyModeOK(perm, fileOwner(info)) {
		return nil, fmt.Errorf("%s %s: %w: mode %04o is wider than 0600; run chmod 600 %s", what, path, ErrKeyPermissions, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	defer clear(b)
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%s %s: %w: larger than %d bytes", what, path, ErrBadKey, maxKeyFile)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		// The parser's messages describe the format, never the bytes.
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, fmt.Errorf("%s %s: %w: it is passphrase-protected", what, path, ErrBadKey)
		}
		return nil, fmt.Errorf("%s %s: %w: %v", what, path, ErrBadKey, err)
	}
	return signer, nil
}

// pinnedKeys returns the keys known_hosts pins for h. It asks the callback
// about a key nobody holds (freshly generated): the KeyError lists what is
// pinned, and is empty when the host has no entry.
func pinnedKeys(cb ssh.HostKeyCallback, path, what string, h Host) ([]ssh.PublicKey, error) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("known_hosts probe key: %w", err)
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("known_hosts probe key: %w", err)
	}
	remote := &net.TCPAddr{IP: net.ParseIP(h.Host), Port: h.port()}
	err = cb(h.Addr(), remote, probe)
	var ke *knownhosts.KeyError
	switch {
	case errors.As(err, &ke) && len(ke.Want) > 0:
		keys := make([]ssh.PublicKey, len(ke.Want))
		for i, k := range ke.Want {
			keys[i] = k.Key
		}
		return keys, nil
	case errors.As(err, &ke), err == nil:
		return nil, fmt.Errorf("known_hosts %s: %w for the %s host %s (write it as %s)",
			path, ErrNoKnownHost, what, h.Addr(), knownhosts.Normalize(h.Addr()))
	default:
		return nil, fmt.Errorf("known_hosts %s: %s host %s: %w", path, what, h.Addr(), err)
	}
}

// hostKeyAlgorithms lists the algorithms of the pinned keys, so the server
// is asked for a key we can verify rather than whichever it prefers.
func hostKeyAlgorithms(keys []ssh.PublicKey) []string {
	seen := map[string]bool{}
	var out []string
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, k := range keys {
		if k.Type() == ssh.KeyAlgoRSA {
			add(ssh.KeyAlgoRSASHA512)
			add(ssh.KeyAlgoRSASHA256)
			continue
		}
		add(k.Type())
	}
	return out
}
