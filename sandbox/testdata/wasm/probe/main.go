// Command probe is the WASI module the wasm backend's tests run (escape
// suite row 29). Built with GOOS=wasip1 GOARCH=wasm; the first argument
// picks what it tries:
//
//	echo [code]   copy stdin to stdout, args and env to stderr, exit code
//	mem           allocate 1 MiB chunks until the runtime fails
//	bigmem N      allocate one N-MiB slice at once
//	loop          spin forever
//	flood N       write N MiB to stdout and to stderr, no newline
//	fs            try to read, write and escape the /workspace preopen
//	net           try TCP connections and a DNS lookup
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

var sink [][]byte

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe MODE")
		os.Exit(64)
	}
	switch os.Args[1] {
	case "echo":
		io.Copy(os.Stdout, os.Stdin)
		fmt.Fprintf(os.Stderr, "args=%s\n", strings.Join(os.Args, " "))
		env := os.Environ()
		sort.Strings(env)
		fmt.Fprintf(os.Stderr, "env=%s\n", strings.Join(env, ","))
		if len(os.Args) > 2 {
			code, _ := strconv.Atoi(os.Args[2])
			os.Exit(code)
		}
	case "mem":
		for i := 0; ; i++ {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = byte(i)
			}
			sink = append(sink, b)
		}
	case "bigmem":
		n, _ := strconv.Atoi(os.Args[2])
		b := make([]byte, n<<20)
		b[len(b)-1] = 1
		sink = append(sink, b)
		fmt.Println("allocated")
	case "loop":
		x := 0
		for {
			x++
		}
	case "flood":
		n, _ := strconv.Atoi(os.Args[2])
		chunk := []byte(strings.Repeat("y", 1<<20))
		for range n {
			os.Stdout.Write(chunk)
			os.Stderr.Write(chunk)
		}
	case "fs":
		fsProbe()
	case "net":
		_, err := net.Dial("tcp", "1.1.1.1:443")
		report("dial", err)
		_, err = net.Dial("tcp", "127.0.0.1:22")
		report("dial-loopback", err)
		_, err = net.LookupHost("example.com")
		report("dns", err)
		// (net.Listen succeeds on wasip1: Go fakes an in-process network
		// there; nothing reaches the host. Not probed.)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(64)
	}
}

// report prints "name: ok" or "name: denied (error)", one line each; the
// test reads the lines back.
func report(name string, err error) {
	if err != nil {
		fmt.Printf("%s: denied (%v)\n", name, err)
		return
	}
	fmt.Printf("%s: ok\n", name)
}

func read(name, path string) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 0 {
		err = fmt.Errorf("empty")
	}
	report(name, err)
}

func fsProbe() {
	read("read-workspace", "/workspace/ok.txt")
	read("read-etc-passwd", "/etc/passwd")
	read("read-dotdot", "/workspace/../../etc/passwd")
	read("read-dotdot-relative", "../../etc/passwd")
	read("read-dotdot-deep", "/workspace/sub/../../../../../../etc/passwd")
	read("read-symlink-out", "/workspace/link-passwd")
	read("read-symlink-dir-out", "/workspace/link-etc/passwd")
	read("read-symlink-up", "/workspace/up/etc/passwd")
	report("write-new", os.WriteFile("/workspace/new.txt", []byte("x"), 0o644))
	report("write-existing", os.WriteFile("/workspace/ok.txt", []byte("x"), 0o644))
	report("write-tmp", os.WriteFile("/tmp/x", []byte("x"), 0o644))
	report("mkdir", os.Mkdir("/workspace/d", 0o755))
	report("symlink-create", os.Symlink("/etc/passwd", "/workspace/evil"))
	report("remove", os.Remove("/workspace/ok.txt"))
	report("rename", os.Rename("/workspace/ok.txt", "/workspace/moved.txt"))
	// (os.Chmod is a stat on wasip1: WASI has no chmod; not probed.)
	report("chtimes", os.Chtimes("/workspace/ok.txt", time.Unix(0, 0), time.Unix(0, 0)))
	report("truncate", os.Truncate("/workspace/ok.txt", 0))
	entries, err := os.ReadDir("/")
	names := []string{}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	fmt.Printf("root-listing: %s (%v)\n", strings.Join(names, ","), err)
	_, err = filepath.Abs(".")
	report("getwd", err)
}
