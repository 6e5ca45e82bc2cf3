// Command probe is the escape suite's attacker: each subcommand tries one
// class of escape from inside a sandbox (SANDBOX.md, programs 1–28).
//
// Exit status: 0 = at least one attempt SUCCEEDED (a breach), 1 = every
// attempt was denied (contained), 2 = the probe itself failed. Every attempt
// prints one line: "DENIED <what>: <error>" or "BREACH <what>".
package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func int80(trap, a1, a2, a3 uintptr) (r uintptr)

var (
	mu       sync.Mutex
	breaches int
)

// try records one attempt: err == nil means it worked, a breach.
func try(what string, err error) {
	mu.Lock()
	defer mu.Unlock()
	if err == nil {
		breaches++
		fmt.Printf("BREACH %s\n", what)
		return
	}
	fmt.Printf("DENIED %s: %v\n", what, err)
}

// check records a condition that must hold: ok false is a breach.
func check(what string, ok bool, detail string) {
	if ok {
		try(what, errors.New("holds: "+detail))
		return
	}
	try(what+" ("+detail+")", nil)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "probe: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: probe <name> [args]")
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "net-connect":
		netConnect(args)
	case "dns":
		dns(args)
	case "raw-sockets":
		rawSockets()
	case "local-services":
		localServices(args)
	case "host-sockets":
		hostSockets(args)
	case "secrets":
		secrets(args)
	case "write-outside":
		writeOutside(args)
	case "symlinks":
		symlinks()
	case "special-files":
		specialFiles()
	case "proc":
		procProbe(args)
	case "fds":
		fds()
	case "privilege":
		privilege(args)
	case "ptrace":
		ptraceProbe()
	case "signals":
		signals(args)
	case "namespaces":
		namespaces()
	case "abi":
		abi()
	case "abi-one":
		abiOne(args)
	case "kernel":
		kernel()
	case "tty":
		tty()
	case "thread-bomb":
		threadBomb()
	case "memory":
		memory(args)
	case "cpu-burn":
		cpuBurn(args)
	case "fill-files":
		fillFiles(args)
	case "fds-exhaust":
		fdsExhaust()
	case "landlock-threads":
		landlockThreads()
	default:
		fail("unknown probe %q", os.Args[1])
	}
	if breaches > 0 {
		os.Exit(0)
	}
	fmt.Println("PROBE CONTAINED")
	os.Exit(1)
}

// #1: TCP to a public IP, a LAN-ish IP and given host addresses.
func netConnect(targets []string) {
	targets = append([]string{"1.1.1.1:443", "10.0.0.1:80", "192.168.1.1:80"}, targets...)
	for _, t := range targets {
		c, err := net.DialTimeout("tcp", t, time.Second)
		if c != nil {
			c.Close()
		}
		try("tcp connect "+t, err)
	}
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.Close(fd)
	}
	try("socket(AF_INET6)", err)
}

// #2: name resolution and raw DNS.
func dns(targets []string) {
	_, err := net.LookupHost("example.com")
	try("resolve example.com", err)
	for _, t := range append([]string{"8.8.8.8:53", "1.1.1.1:53"}, targets...) {
		c, err := net.Dial("udp", t)
		if err == nil {
			_, err = c.Write([]byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"))
			c.Close()
		}
		try("udp dns query to "+t, err)
	}
}

// #3: raw, packet, netlink and vsock sockets.
func rawSockets() {
	for _, s := range []struct {
		name            string
		dom, typ, proto int
	}{
		{"AF_PACKET/SOCK_RAW", unix.AF_PACKET, unix.SOCK_RAW, 0x0300},
		{"AF_INET/SOCK_RAW icmp", unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP},
		{"AF_INET/SOCK_DGRAM icmp (ping)", unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP},
		{"AF_NETLINK route", unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE},
		{"AF_VSOCK", unix.AF_VSOCK, unix.SOCK_STREAM, 0},
		{"AF_BLUETOOTH", unix.AF_BLUETOOTH, unix.SOCK_RAW, 0},
		{"AF_ALG", unix.AF_ALG, unix.SOCK_SEQPACKET, 0},
	} {
		fd, err := unix.Socket(s.dom, s.typ, s.proto)
		if err == nil {
			unix.Close(fd)
		}
		try("socket "+s.name, err)
	}
}

// #4: the console's loopback port and abstract Unix socket.
func localServices(args []string) {
	if len(args) != 2 {
		fail("local-services TCPADDR ABSTRACTNAME")
	}
	c, err := net.DialTimeout("tcp", args[0], time.Second)
	if c != nil {
		c.Close()
	}
	try("tcp connect to console port "+args[0], err)
	u, err := net.Dial("unix", "@"+args[1])
	if u != nil {
		u.Close()
	}
	try("connect abstract unix @"+args[1], err)
}

// #5: host Unix sockets by path.
func hostSockets(paths []string) {
	for _, p := range append([]string{"/var/run/docker.sock", "/run/docker.sock", "/run/dbus/system_bus_socket", "/run/systemd/private"}, paths...) {
		c, err := net.Dial("unix", p)
		if c != nil {
			c.Close()
		}
		try("connect unix "+p, err)
	}
}

// #7: secrets on the host, and the environment.
func secrets(args []string) {
	// args: marker that must not appear anywhere, then host secret paths.
	if len(args) < 1 {
		fail("secrets MARKER [PATH...]")
	}
	marker := args[0]
	for _, p := range append([]string{"/root/.ssh/id_rsa", "/root/.ssh/id_ed25519", "/root/.aws/credentials", "/etc/shadow", "/etc/gshadow", "/root/.bash_history"}, args[1:]...) {
		_, err := os.ReadFile(p)
		try("read "+p, err)
	}
	envs, _ := filepath.Glob("/proc/[0-9]*/environ")
	found := false
	for _, e := range envs {
		b, err := os.ReadFile(e)
		if err == nil && bytes.Contains(b, []byte(marker)) {
			found = true
			fmt.Printf("marker found in %s\n", e)
		}
	}
	check("marker absent from every readable /proc/*/environ", !found, fmt.Sprintf("%d environ files", len(envs)))
	allowed := map[string]bool{"PATH": true, "HOME": true, "TMPDIR": true, "LANG": true, "PROBE_ALLOWED": true}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		check("env var "+k+" allow-listed", allowed[k], kv)
		if strings.Contains(kv, marker) {
			check("marker absent from env", false, k)
		}
	}
}

// #8: writes outside the workspace; args are extra paths (e.g. the
// read-only workspace's .git files).
func writeOutside(paths []string) {
	for _, p := range append([]string{"/etc/x", "/etc/passwd", "/usr/bin/x", "/root/.bashrc", "/workspace/../x", "/x", "/proc/x", "/dev/x"}, paths...) {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err == nil {
			_, err = f.WriteString("escaped\n")
			f.Close()
		}
		try("write "+p, err)
	}
	try("mkdir /etc/x.d", os.Mkdir("/etc/x.d", 0o755))
}

// #9: symlink escapes from a writable workspace.
func symlinks() {
	_ = os.Symlink("/etc/passwd", "/workspace/p")
	f, err := os.OpenFile("/workspace/p", os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		_, err = f.WriteString("x\n")
		f.Close()
	}
	try("write through symlink ws/p -> /etc/passwd", err)
	_ = os.Symlink("../../..", "/workspace/up")
	err = os.WriteFile("/workspace/up/etc/escaped", []byte("x"), 0o644)
	try("write through ws/up/etc/escaped (up -> ../../..)", err)
	err = os.WriteFile("/workspace/up/usr/escaped", []byte("x"), 0o644)
	try("write through ws/up/usr/escaped", err)
	// A symlink to a host path that does not exist in the sandbox: left
	// for the host, which must never follow it.
	_ = os.Symlink("/root", "/workspace/hostroot")
}

// #10: hardlinks, device nodes, fifos.
func specialFiles() {
	try("hardlink /etc/passwd into workspace", os.Link("/etc/passwd", "/workspace/h"))
	try("hardlink /usr/bin/env into workspace", os.Link("/usr/bin/env", "/workspace/h2"))
	try("mknod char 1:1 (mem)", unix.Mknod("/workspace/mem", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 1))))
	try("mknod block 8:0", unix.Mknod("/workspace/sda", unix.S_IFBLK|0o666, int(unix.Mkdev(8, 0))))
	if err := unix.Mkfifo("/workspace/fifo", 0o644); err != nil {
		fmt.Printf("INFO mkfifo: %v\n", err)
	} else {
		fmt.Printf("INFO mkfifo allowed (harmless)\n")
	}
}

// #11: /proc and /sys.
func procProbe(args []string) {
	pids, _ := filepath.Glob("/proc/[0-9]*")
	check("only sandbox pids visible", len(pids) <= 8, fmt.Sprintf("%d pids", len(pids)))
	for _, f := range []string{"/proc/kcore", "/proc/keys", "/proc/sched_debug", "/proc/timer_list", "/proc/kallsyms", "/proc/kmsg"} {
		b, err := os.ReadFile(f)
		if err == nil && len(b) == 0 {
			err = errors.New("empty (masked)")
		}
		try("read "+f, err)
	}
	for _, f := range []string{"/proc/sys/kernel/hostname", "/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger", "/proc/sys/vm/drop_caches"} {
		err := os.WriteFile(f, []byte("x"), 0)
		try("write "+f, err)
	}
	root, err := os.Readlink("/proc/1/root")
	fmt.Printf("INFO /proc/1/root -> %q (%v)\n", root, err)
	for _, p := range append([]string{"/proc/1/root/oldroot", "/proc/1/root/root", "/proc/1/root/home", "/proc/1/root/var"}, args...) {
		_, err := os.Stat(p)
		try("reach host path via "+p, err)
	}
	_, err = os.ReadDir("/sys/firmware")
	try("list /sys/firmware", err)
	_, err = os.ReadDir("/sys/fs/cgroup")
	try("list /sys/fs/cgroup", err)
}

// #12: inherited descriptors and cwd.
func fds() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		fail("read /proc/self/fd: %v", err)
	}
	var extra []string
	for _, e := range ents {
		n, _ := strconv.Atoi(e.Name())
		if n <= 2 {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(n), unix.F_GETFD, 0); err != nil {
			continue // the directory ReadDir used, closed since
		}
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		extra = append(extra, e.Name()+"->"+target)
		if unix.Fchdir(n) == nil {
			wd, _ := os.Getwd()
			check("fchdir on inherited fd "+e.Name()+" stays inside", !strings.HasPrefix(wd, "/oldroot"), wd)
		}
		if fd, err := unix.Openat(n, "..", unix.O_RDONLY|unix.O_DIRECTORY, 0); err == nil {
			unix.Close(fd)
			try("openat(.., inherited fd "+e.Name()+")", nil)
		}
	}
	check("only fds 0,1,2 inherited", len(extra) == 0, strings.Join(extra, " "))
	wd, err := os.Getwd()
	check("cwd is /workspace", err == nil && wd == "/workspace", wd)
}

// #13: privilege and identity.
func privilege(args []string) {
	status, _ := os.ReadFile("/proc/self/status")
	fields := map[string]string{}
	for line := range strings.Lines(string(status)) {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		check(k+" is zero", fields[k] == "0000000000000000", fields[k])
	}
	check("NoNewPrivs is 1", fields["NoNewPrivs"] == "1", fields["NoNewPrivs"])
	check("Seccomp is filter mode", fields["Seccomp"] == "2", fields["Seccomp"])
	check("uid is not 0", os.Getuid() != 0 && os.Geteuid() != 0, fields["Uid"])
	check("no supplementary group 0", !strings.Contains(" "+fields["Groups"]+" ", " 0 "), fields["Groups"])
	uidMap, _ := os.ReadFile("/proc/self/uid_map")
	fmt.Printf("INFO uid_map (relative to the parent namespace): %s\n", strings.TrimSpace(string(uidMap)))
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err == nil {
		check("capget effective is empty", data[0].Effective == 0 && data[1].Effective == 0, fmt.Sprint(data))
	}
	try("setuid(0)", unix.Setuid(0))
	try("setresuid(0,0,0)", unix.Setresuid(0, 0, 0))
	// setuid binaries given as args (a root-owned setuid copy bound in).
	for _, bin := range append([]string{"sudo", "su"}, args...) {
		p, err := exec.LookPath(bin)
		if err != nil {
			fmt.Printf("INFO %s not installed\n", bin)
			continue
		}
		out, err := exec.Command(p, "-n", "true").CombinedOutput()
		if strings.HasPrefix(p, "/suid/") {
			// our setuid copy of id: must still report our uid
			out, err = exec.Command(p, "-u").Output()
			if err == nil && strings.TrimSpace(string(out)) == "0" {
				try("setuid-root copy runs as root", nil)
			} else {
				try("setuid-root copy runs as root", fmt.Errorf("uid %s (%v)", strings.TrimSpace(string(out)), err))
			}
			continue
		}
		if err == nil {
			try(bin+" -n true", nil)
		} else {
			try(bin+" -n true", fmt.Errorf("%v: %s", err, bytes.TrimSpace(out)))
		}
	}
}

// #14: ptrace and memory access to other sandbox processes.
func ptraceProbe() {
	child := exec.Command("/bin/sleep", "30")
	if err := child.Start(); err != nil {
		fail("start child: %v", err)
	}
	defer child.Process.Kill()
	cpid := child.Process.Pid
	for _, pid := range []int{1, cpid} {
		try(fmt.Sprintf("ptrace(ATTACH, %d)", pid), unix.PtraceAttach(pid))
		try(fmt.Sprintf("ptrace(SEIZE, %d)", pid), unix.PtraceSeize(pid))
		local := make([]byte, 8)
		_, err := unix.ProcessVMReadv(pid, []unix.Iovec{{Base: &local[0], Len: 8}}, []unix.RemoteIovec{{Base: 0x400000, Len: 8}}, 0)
		try(fmt.Sprintf("process_vm_readv(%d)", pid), err)
		f, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", pid), os.O_RDWR, 0)
		if err == nil {
			f.Close()
		}
		try(fmt.Sprintf("open /proc/%d/mem read-write", pid), err)
	}
	// pid 1 (the sandbox's init/reaper) is non-dumpable: not even a
	// read-only look at its memory, environment or binary.
	if f, err := os.Open("/proc/1/mem"); err == nil {
		f.Close()
		try("open /proc/1/mem read-only", nil)
	} else {
		try("open /proc/1/mem read-only", err)
	}
	_, err := os.ReadFile("/proc/1/environ")
	try("read /proc/1/environ", err)
	_, err = os.Readlink("/proc/1/exe")
	try("readlink /proc/1/exe", err)
	_, _, e := unix.Syscall(unix.SYS_KCMP, 1, uintptr(cpid), 0)
	try("kcmp", errnoErr(e))
	_, _, e = unix.Syscall(unix.SYS_PIDFD_GETFD, 0, 0, 0)
	try("pidfd_getfd", errnoErr(e))
}

// #15: signals out of the sandbox. args: host pids that must survive.
func signals(args []string) {
	check("parent is the sandbox's pid 1 or invisible", os.Getppid() <= 1, strconv.Itoa(os.Getppid()))
	for _, a := range args {
		pid, _ := strconv.Atoi(a)
		try("kill(host pid "+a+", 0)", unix.Kill(pid, 0))
		try("kill(host pid "+a+", SIGKILL)", unix.Kill(pid, unix.SIGKILL))
		fd, err := unix.PidfdOpen(pid, 0)
		if err == nil {
			unix.Close(fd)
		}
		try("pidfd_open(host pid "+a+")", err)
	}
	// kill(-1) reaches only our own namespace; the host checks its canary.
	err := unix.Kill(-1, unix.SIGKILL)
	fmt.Printf("INFO kill(-1, SIGKILL): %v\n", err)
}

// #16: namespace and mount games.
func namespaces() {
	try("unshare(NEWUSER|NEWNS)", unix.Unshare(unix.CLONE_NEWUSER|unix.CLONE_NEWNS))
	try("unshare(NEWNET)", unix.Unshare(unix.CLONE_NEWNET))
	if fd, err := unix.Open("/proc/1/ns/mnt", unix.O_RDONLY, 0); err == nil {
		try("setns(/proc/1/ns/mnt)", unix.Setns(fd, 0))
		unix.Close(fd)
	}
	try("mount proc", unix.Mount("proc", "/tmp", "proc", 0, ""))
	try("mount tmpfs", unix.Mount("tmpfs", "/tmp", "tmpfs", 0, ""))
	try("bind mount / on /tmp", unix.Mount("/", "/tmp", "", unix.MS_BIND, ""))
	try("umount /proc", unix.Unmount("/proc", unix.MNT_DETACH))
	try("pivot_root", unix.PivotRoot("/tmp", "/tmp"))
	try("chroot /tmp", unix.Chroot("/tmp"))
	_, _, e := unix.RawSyscall6(unix.SYS_CLONE, unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
	if e == 0 {
		// child or parent: a new user namespace was created
		try("clone(CLONE_NEWUSER)", nil)
	} else {
		try("clone(CLONE_NEWUSER)", e)
	}
	_, _, e = unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0)
	if e == unix.ENOSYS {
		try("clone3 (must be ENOSYS)", e)
	} else {
		try("clone3 (must be ENOSYS, got "+e.Error()+")", nil)
	}
	try("sethostname", unix.Sethostname([]byte("pwned")))
}

// #17: the same denied calls through the i386 (int 0x80) and x32 entries.
// Each attempt runs in a child: the filter kills the process (SIGSYS).
func abi() {
	self, _ := os.Executable()
	for _, c := range [][]string{
		{"i386 getpid", "i386", "20"},
		{"i386 unshare(NEWUSER)", "i386", "310", strconv.Itoa(unix.CLONE_NEWUSER)},
		{"i386 mount", "i386", "21"},
		{"i386 ptrace(ATTACH,1)", "i386", "26", "16", "1"},
		{"i386 socketcall(socket)", "i386", "102", "1"},
		{"i386 setuid(0)", "i386", "213", "0"},
		{"x32 unshare(NEWUSER)", "x32", strconv.Itoa(unix.SYS_UNSHARE), strconv.Itoa(unix.CLONE_NEWUSER)},
		{"x32 getpid", "x32", strconv.Itoa(unix.SYS_GETPID)},
	} {
		cmd := exec.Command(self, append([]string{"abi-one"}, c[1:]...)...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			try(c[0]+": "+strings.TrimSpace(string(out)), nil)
		case errors.As(err, &ee):
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				try(c[0], fmt.Errorf("killed by %v", ws.Signal()))
			} else {
				try(c[0], fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out))))
			}
		default:
			try(c[0], err)
		}
	}
}

// abiOne: abi-one i386|x32 NR [ARGS...]; exit 0 if the call succeeded.
func abiOne(args []string) {
	if len(args) < 2 {
		fail("abi-one i386|x32 NR [A1 A2 A3]")
	}
	nr, _ := strconv.ParseUint(args[1], 10, 64)
	var a [3]uintptr
	for i := 0; i < 3 && i+2 < len(args); i++ {
		v, _ := strconv.ParseUint(args[i+2], 10, 64)
		a[i] = uintptr(v)
	}
	var r uintptr
	if args[0] == "i386" {
		r = int80(uintptr(nr), a[0], a[1], a[2])
		if int32(r) < 0 && int32(r) > -4096 {
			fmt.Printf("errno %d\n", -int32(r))
			os.Exit(3)
		}
	} else {
		r1, _, e := unix.RawSyscall(uintptr(nr)|0x40000000, a[0], a[1], a[2])
		if e != 0 {
			fmt.Printf("errno %d\n", int(e))
			os.Exit(3)
		}
		r = r1
	}
	fmt.Printf("returned %d\n", r)
	os.Exit(0)
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// #18: kernel attack surface.
func kernel() {
	var params [120]byte
	for _, c := range []struct {
		name string
		nr   uintptr
		a    [3]uintptr
	}{
		{"io_uring_setup", unix.SYS_IO_URING_SETUP, [3]uintptr{8, uintptr(unsafe.Pointer(&params[0]))}},
		{"io_uring_enter", unix.SYS_IO_URING_ENTER, [3]uintptr{0}},
		{"bpf(PROG_LOAD)", unix.SYS_BPF, [3]uintptr{5, 0, 0}},
		{"perf_event_open", unix.SYS_PERF_EVENT_OPEN, [3]uintptr{0, 0, ^uintptr(0)}},
		{"userfaultfd", unix.SYS_USERFAULTFD, [3]uintptr{0}},
		{"keyctl(GET_KEYRING_ID)", unix.SYS_KEYCTL, [3]uintptr{0, ^uintptr(3), 0}},
		{"add_key", unix.SYS_ADD_KEY, [3]uintptr{0, 0, 0}},
		{"request_key", unix.SYS_REQUEST_KEY, [3]uintptr{0, 0, 0}},
		{"kexec_load", unix.SYS_KEXEC_LOAD, [3]uintptr{0, 0, 0}},
		{"init_module", unix.SYS_INIT_MODULE, [3]uintptr{0, 0, 0}},
		{"finit_module", unix.SYS_FINIT_MODULE, [3]uintptr{0, 0, 0}},
		{"delete_module", unix.SYS_DELETE_MODULE, [3]uintptr{0, 0, 0}},
		{"open_by_handle_at", unix.SYS_OPEN_BY_HANDLE_AT, [3]uintptr{0, 0, 0}},
		{"name_to_handle_at", unix.SYS_NAME_TO_HANDLE_AT, [3]uintptr{0, 0, 0}},
		{"clock_settime", unix.SYS_CLOCK_SETTIME, [3]uintptr{0, 0}},
		{"settimeofday", unix.SYS_SETTIMEOFDAY, [3]uintptr{0, 0}},
		{"adjtimex", unix.SYS_ADJTIMEX, [3]uintptr{0}},
		{"swapon", unix.SYS_SWAPON, [3]uintptr{0, 0}},
		{"reboot", unix.SYS_REBOOT, [3]uintptr{0, 0, 0}},
		{"syslog(READ_ALL)", unix.SYS_SYSLOG, [3]uintptr{3, 0, 0}},
		{"acct", unix.SYS_ACCT, [3]uintptr{0}},
		{"personality(READ_IMPLIES_EXEC)", unix.SYS_PERSONALITY, [3]uintptr{0x0400000}},
		{"iopl", unix.SYS_IOPL, [3]uintptr{3}},
		{"ioperm", unix.SYS_IOPERM, [3]uintptr{0, 1, 1}},
		{"mbind", unix.SYS_MBIND, [3]uintptr{0, 0, 0}},
		{"move_mount", unix.SYS_MOVE_MOUNT, [3]uintptr{0, 0, 0}},
		{"fsopen", unix.SYS_FSOPEN, [3]uintptr{0, 0, 0}},
		{"open_tree", unix.SYS_OPEN_TREE, [3]uintptr{0, 0, 0}},
		{"quotactl", unix.SYS_QUOTACTL, [3]uintptr{0, 0, 0}},
	} {
		r, _, e := unix.Syscall(c.nr, c.a[0], c.a[1], c.a[2])
		if e == 0 {
			try(fmt.Sprintf("%s returned %d", c.name, r), nil)
		} else {
			try(c.name, e)
		}
	}
}

// #19: terminal injection.
func tty() {
	b := byte('x')
	for _, c := range []struct {
		name string
		cmd  uint64
	}{
		{"TIOCSTI", unix.TIOCSTI},
		{"TIOCSTI with high bits", 0xffffffff00000000 | unix.TIOCSTI},
		{"TIOCLINUX", unix.TIOCLINUX},
		{"TIOCLINUX with high bits", 0x1_00000000 | unix.TIOCLINUX},
	} {
		for _, fd := range []uintptr{0, 1, 2} {
			_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, uintptr(c.cmd), uintptr(unsafe.Pointer(&b)))
			try(fmt.Sprintf("ioctl(%d, %s)", fd, c.name), errnoErr(e))
		}
	}
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	try("open /dev/tty (controlling terminal)", err)
	sid, _ := unix.Getsid(0)
	check("own session (sid == pid namespace member)", sid > 0, strconv.Itoa(sid))
}

// #20: thread bomb (the Go runtime aborts when it cannot create threads).
func threadBomb() {
	var n int
	for {
		ready := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(ready)
			select {}
		}()
		<-ready
		n++
		if n%64 == 0 {
			fmt.Printf("INFO %d threads\n", n)
		}
		if n > 100000 {
			try("100000 threads created", nil)
			return
		}
	}
}

// #21: allocate and touch N MiB.
func memory(args []string) {
	mib, _ := strconv.Atoi(args[0])
	var keep [][]byte
	for i := 0; i < mib; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		keep = append(keep, b)
	}
	try(fmt.Sprintf("allocated and touched %d MiB", len(keep)), nil)
}

// #22: N busy threads for D.
func cpuBurn(args []string) {
	n, _ := strconv.Atoi(args[0])
	d, _ := time.ParseDuration(args[1])
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := 0
			for time.Now().Before(end) {
				for i := 0; i < 1e6; i++ {
					x += i
				}
			}
			_ = x
		}()
	}
	wg.Wait()
	fmt.Println("INFO burn done")
	fmt.Println("PROBE CONTAINED")
	os.Exit(1)
}

// #23: many tiny files in DIR until failure.
func fillFiles(args []string) {
	dir := args[0]
	max, _ := strconv.Atoi(args[1])
	for i := 0; i < max; i++ {
		f, err := os.OpenFile(filepath.Join(dir, "f"+strconv.Itoa(i)), os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			try(fmt.Sprintf("create %d tiny files in %s (stopped at %d)", max, dir, i), err)
			return
		}
		f.Close()
	}
	try(fmt.Sprintf("created %d tiny files in %s", max, dir), nil)
}

// #24: descriptor exhaustion.
func fdsExhaust() {
	var n int
	for n = 0; n < 200000; n++ {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY, 0)
		if err != nil {
			try(fmt.Sprintf("open 200000 fds (stopped at %d)", n), err)
			return
		}
		_ = fd
	}
	try("opened 200000 fds", nil)
}

// Landlock on every thread: write this thread's comm from many OS threads
// (no mount blocks it; only Landlock does).
func landlockThreads() {
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			f, err := os.OpenFile("/proc/thread-self/comm", os.O_WRONLY, 0)
			if err == nil {
				_, err = f.WriteString("pwned")
				f.Close()
			}
			try(fmt.Sprintf("thread %d (tid %d) writes /proc/thread-self/comm", i, unix.Gettid()), err)
		}()
	}
	wg.Wait()
}
