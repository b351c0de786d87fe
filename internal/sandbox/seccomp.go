package sandbox

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Landlock's TCP rules (ABI 4 and later) cover plain TCP only: a socket
// made with IPPROTO_MPTCP connects wherever it likes
// (TestLauncherConfines/connect-other-port-mptcp found it on this kernel).
// So the launcher also installs a small seccomp filter that refuses such
// sockets, and io_uring, which could make sockets without the socket()
// system call. Everything else is allowed: the filter is a patch over one
// hole, not a second sandbox.

// auditArch is this build's seccomp architecture, 0 where unknown.
func auditArch() uint32 {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64
	}
	return 0
}

// x32SyscallBit marks the x32 ABI's system calls on amd64; the filter
// refuses them all (nothing here is an x32 program).
const x32SyscallBit = 0x40000000

// filterProgram is the seccomp filter: refuse socket(…, IPPROTO_MPTCP),
// io_uring_setup and (on amd64) x32 calls, with EPERM; allow the rest.
// A program of another architecture is refused every call.
func filterProgram(arch uint32) []unix.SockFilter {
	const (
		ld   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge  = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
		deny = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		// Offsets in struct seccomp_data: nr, arch, args[2] (low half on
		// a little-endian machine).
		offNr    = 0
		offArch  = 4
		offProto = 16 + 2*8
	)
	return []unix.SockFilter{
		/* 0 */ {Code: ld, K: offArch},
		/* 1 */ {Code: jeq, K: arch, Jt: 1, Jf: 0},
		/* 2 */ {Code: ret, K: deny},
		/* 3 */ {Code: ld, K: offNr},
		/* 4 */ {Code: jge, K: x32SyscallBit, Jt: 5, Jf: 0}, // → 10
		/* 5 */ {Code: jeq, K: unix.SYS_IO_URING_SETUP, Jt: 4, Jf: 0}, // → 10
		/* 6 */ {Code: jeq, K: unix.SYS_SOCKET, Jt: 0, Jf: 2}, // → 9
		/* 7 */ {Code: ld, K: offProto},
		/* 8 */ {Code: jeq, K: unix.IPPROTO_MPTCP, Jt: 1, Jf: 0}, // → 10
		/* 9 */ {Code: ret, K: unix.SECCOMP_RET_ALLOW},
		/* 10 */ {Code: ret, K: deny},
	}
}

// denyMPTCP installs the filter on every thread of the process (it
// survives exec). The calling thread must be locked (runtime.LockOSThread)
// and have no_new_privs set.
func denyMPTCP() error {
	arch := auditArch()
	if arch == 0 {
		return fmt.Errorf("seccomp: no filter for %s", runtime.GOARCH)
	}
	prog := filterProgram(arch)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	return nil
}
