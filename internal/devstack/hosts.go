package devstack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"breakglass/internal/testing/devvmsim"
	"breakglass/internal/testing/pvesim"
)

// startHosts generates the keys and starts the Proxmox host (simulated,
// blackholed or a closed port) and the devvm (simulated, or a closed
// port), and pins both host keys.
func (s *Stack) startHosts() error {
	keysDir := filepath.Join(s.Dir, "keys")
	if err := os.Mkdir(keysDir, 0o700); err != nil {
		return fmt.Errorf("keys folder: %w", err)
	}
	pveKey, err := newKey(keysDir, "pve")
	if err != nil {
		return err
	}
	devvmKey, err := newKey(keysDir, "devvm")
	if err != nil {
		return err
	}
	s.PVEKey, s.DevvmKey = pveKey.path, devvmKey.path
	pveHost, err := newKey("", "")
	if err != nil {
		return err
	}
	devvmHost, err := newKey("", "")
	if err != nil {
		return err
	}
	if err := s.startPVE(pveKey, pveHost); err != nil {
		return err
	}
	if err := s.startDevvm(devvmKey, devvmHost); err != nil {
		return err
	}
	s.KnownHosts = filepath.Join(s.Dir, "known_hosts")
	pins := knownHostsLine(s.PVEAddr, pveHost.signer.PublicKey()) + knownHostsLine(s.DevvmAddr, devvmHost.signer.PublicKey())
	if err := os.WriteFile(s.KnownHosts, []byte(pins), 0o644); err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	return nil
}

// startPVE starts the Proxmox host Config.PVE names.
func (s *Stack) startPVE(client, host key) error {
	var err error
	switch s.cfg.PVE {
	case PVEBlackholed:
		if s.blackhole, err = startBlackhole(); err != nil {
			return err
		}
		s.PVEAddr, s.Blackholed = s.blackhole.addr, s.blackhole.accepted
	case PVEDown:
		s.PVEAddr, err = s.refuse()
	default:
		s.PVE, err = pvesim.Start(pvesim.Config{
			VM:            s.VM,
			AuthorizedKey: client.signer.PublicKey(),
			HostKey:       host.signer,
			Logger:        s.cfg.Logger.Named("pve"),
			// The local stack shows every rung, guest-exec included.
			AllowGuestExec: true,
		})
		if err != nil {
			return fmt.Errorf("simulated Proxmox host: %w", err)
		}
		s.PVEAddr = s.PVE.Addr
	}
	return err
}

// startDevvm starts the simulated devvm, or picks a closed port.
func (s *Stack) startDevvm(client, host key) error {
	var err error
	if s.cfg.DevvmDown {
		s.DevvmAddr, err = s.refuse()
		return err
	}
	s.Devvm, err = devvmsim.Start(devvmsim.Config{
		User:          DevvmUser,
		AuthorizedKey: client.signer.PublicKey(),
		HostKey:       host.signer,
		// ssh fails whenever the simulated VM's sshd would not answer.
		Reachable: s.VM.SSHUp,
	})
	if err != nil {
		return fmt.Errorf("simulated devvm: %w", err)
	}
	s.DevvmAddr = s.Devvm.Addr
	return nil
}

// refuse holds a port that refuses connections until Close.
func (s *Stack) refuse() (string, error) {
	r, err := holdRefusedPort()
	if err != nil {
		return "", err
	}
	s.refused = append(s.refused, r)
	return r.addr, nil
}

// closeHosts stops whichever hosts were started.
func (s *Stack) closeHosts() error {
	var errs []error
	for _, r := range s.refused {
		errs = append(errs, r.Close())
	}
	s.refused = nil
	if s.blackhole != nil {
		s.blackhole.Close()
	}
	if s.Devvm != nil {
		errs = append(errs, s.Devvm.Close())
	}
	if s.PVE != nil {
		errs = append(errs, s.PVE.Close())
	}
	return errors.Join(errs...)
}
