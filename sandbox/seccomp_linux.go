//go:build linux

package sandbox

import (
	"fmt"
	"syscall"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// seccompAllow is the allow-list: syscall names (x86_64) any ordinary
// program, Python, a shell or a Go binary needs. It is derived from Docker's
// default profile (moby/profiles/seccomp) minus everything this sandbox never
// grants: ptrace, process_vm_*, mount and namespace calls, io_uring, bpf,
// perf_event_open, userfaultfd, keyrings, kexec, modules, handle-based opens,
// clock/time setting, swap, reboot, syslog, quotactl, chroot, sethostname,
// NUMA policy, kcmp, pidfd_getfd, fanotify and the new mount API. Anything
// not listed fails with EPERM.
var seccompAllow = []string{
	"accept", "accept4", "access", "alarm", "bind", "brk", "capget", "capset",
	"chdir", "chmod", "chown", "clock_getres", "clock_gettime", "clock_nanosleep",
	"close", "close_range", "connect", "copy_file_range", "creat", "dup", "dup2",
	"dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait",
	"epoll_pwait2", "epoll_wait", "eventfd", "eventfd2", "execve", "execveat",
	"exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fallocate",
	"fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchownat", "fcntl",
	"fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
	"fsetxattr", "fstat", "fstatfs", "fsync", "ftruncate", "futex", "futex_waitv",
	"futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid",
	"geteuid", "getgid", "getgroups", "getitimer", "getpeername", "getpgid",
	"getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
	"getresuid", "getrlimit", "get_robust_list", "getrusage", "getsid",
	"getsockname", "getsockopt", "gettid", "gettimeofday", "getuid", "getxattr",
	"inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "ioctl",
	"io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "ioprio_get",
	"ioprio_set", "io_setup", "io_submit", "kill", "landlock_add_rule",
	"landlock_create_ruleset", "landlock_restrict_self", "lchown", "lgetxattr",
	"link", "linkat", "listen", "listxattr", "llistxattr", "lremovexattr",
	"lseek", "lsetxattr", "lstat", "madvise", "membarrier", "memfd_create",
	"mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2",
	"mlockall", "mmap", "mprotect", "mq_getsetattr", "mq_notify", "mq_open",
	"mq_timedreceive", "mq_timedsend", "mq_unlink", "mremap", "msgctl", "msgget",
	"msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap", "nanosleep",
	"newfstatat", "open", "openat", "openat2", "pause", "pidfd_open",
	"pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
	"pkey_mprotect", "poll", "ppoll", "prctl", "pread64", "preadv", "preadv2",
	"prlimit64", "pselect6", "pwrite64", "pwritev", "pwritev2", "read",
	"readahead", "readlink", "readlinkat", "readv", "recvfrom", "recvmmsg",
	"recvmsg", "remap_file_pages", "removexattr", "rename", "renameat",
	"renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction",
	"rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
	"rt_sigsuspend", "rt_sigtimedwait", "rt_tgsigqueueinfo", "sched_getaffinity",
	"sched_getattr", "sched_getparam", "sched_get_priority_max",
	"sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
	"sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler",
	"sched_yield", "seccomp", "select", "semctl", "semget", "semop", "semtimedop",
	"sendfile", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsuid",
	"setgid", "setgroups", "setitimer", "setpgid", "setpriority", "setregid",
	"setresgid", "setresuid", "setreuid", "setrlimit", "set_robust_list",
	"setsid", "setsockopt", "set_tid_address", "setuid", "setxattr", "shmat",
	"shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd",
	"signalfd4", "socketpair", "splice", "stat", "statfs", "statx", "symlink",
	"symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill",
	"time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
	"timer_settime", "timerfd_create", "timerfd_gettime", "timerfd_settime",
	"times", "tkill", "truncate", "umask", "uname", "unlink", "unlinkat", "utime",
	"utimensat", "utimes", "vfork", "vmsplice", "wait4", "waitid", "write",
	"writev", "arch_prctl",
}

// Namespace flags a sandboxed clone must not carry.
const cloneNSFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP

// seccompOptions vary the filter by spec.
type seccompOptions struct {
	AllowInet bool // AF_INET/AF_INET6 sockets (allowlist mode only)
}

// seccompPolicy is the allow-list policy (go-seccomp-bpf), default EPERM.
func seccompPolicy(o seccompOptions) seccomp.Policy {
	eq := func(arg uint32, v uint64) seccomp.ArgumentConditions {
		return seccomp.ArgumentConditions{{Argument: arg, Operation: seccomp.Equal, Value: v}}
	}
	families := []uint64{unix.AF_UNIX}
	if o.AllowInet {
		families = append(families, unix.AF_INET, unix.AF_INET6)
	}
	var cond []seccomp.NameWithConditions
	for _, f := range families {
		cond = append(cond,
			seccomp.NameWithConditions{Name: "socket", Conditions: eq(0, f)})
	}
	// personality: only the harmless personas Docker allows (query included).
	for _, p := range []uint64{0, 0x8, 0x20000, 0x20008, 0xffffffff} {
		cond = append(cond, seccomp.NameWithConditions{Name: "personality", Conditions: eq(0, p)})
	}
	cond = append(cond, seccomp.NameWithConditions{Name: "clone", Conditions: seccomp.ArgumentConditions{
		{Argument: 0, Operation: seccomp.BitsNotSet, Value: cloneNSFlags},
	}})
	return seccomp.Policy{
		DefaultAction: seccomp.ActionErrno, // EPERM
		Syscalls: []seccomp.SyscallGroup{
			// clone3 passes its flags in memory a filter cannot read: ENOSYS
			// makes glibc fall back to clone, whose flags are checked above.
			{Names: []string{"clone3"}, Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS)},
			{Names: seccompAllow, NamesWithCondtions: cond, Action: seccomp.ActionAllow},
		},
	}
}

// Seccomp return values used by the prologue.
const (
	secRetKill     = unix.SECCOMP_RET_KILL_PROCESS
	secRetEPERM    = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	auditArchX8664 = 0xc000003e
	x32SyscallBit  = 0x40000000
	tiocsti        = 0x5412
	tioclinux      = 0x541c
)

// seccompProgram assembles the filter: a prologue that kills any syscall not
// made through the x86_64 entry (int 0x80 i386 and the x32 bit: the known
// deny-list bypass) and refuses TIOCSTI/TIOCLINUX on the masked 32-bit
// ioctl cmd (CVE-2019-10063), followed by the allow-list (where ioctl is
// otherwise allowed: isatty, FIONBIO, terminal sizes).
func seccompProgram(o seccompOptions) ([]bpf.RawInstruction, error) {
	pol := seccompPolicy(o)
	body, err := pol.Assemble()
	if err != nil {
		return nil, fmt.Errorf("sandbox: seccomp: %w", err)
	}
	prologue := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArchX8664, SkipTrue: 1},
		bpf.RetConstant{Val: secRetKill},
		bpf.LoadAbsolute{Off: 0, Size: 4}, // nr
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32SyscallBit, SkipFalse: 1},
		bpf.RetConstant{Val: secRetKill},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_IOCTL, SkipFalse: 4},
		bpf.LoadAbsolute{Off: 16 + 8, Size: 4}, // low 32 bits of arg 1 (cmd)
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: tiocsti, SkipTrue: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: tioclinux, SkipFalse: 1},
		bpf.RetConstant{Val: secRetEPERM},
	}
	raw, err := bpf.Assemble(append(prologue, body...))
	if err != nil {
		return nil, fmt.Errorf("sandbox: seccomp: %w", err)
	}
	return raw, nil
}

// loadSeccomp installs the filter on every thread (TSYNC). no_new_privs must
// already be set.
func loadSeccomp(raw []bpf.RawInstruction) error {
	filter := make([]syscall.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = syscall.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog := syscall.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	_, _, errno := syscall.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return fmt.Errorf("sandbox: seccomp load: %w", errno)
	}
	return nil
}
