package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlock/airlock"
	"github.com/airlock/airlock/broker/policy"
	"github.com/airlock/airlock/sandbox"
)

func init() {
	register(command{Name: "sandbox", Summary: "run code in the sandbox directly; check what this machine supports", Run: runSandbox})
}

const sandboxUsage = `run [flags] -- CMD [ARG…]
       airlock sandbox run [flags] --lang python|shell|bash --code CODE | --code-file FILE|-
       airlock sandbox doctor [--json]`

func runSandbox(ctx context.Context, e env) error {
	if len(e.Args) == 0 {
		fmt.Fprintf(e.Stderr, "usage: airlock sandbox %s\n", sandboxUsage)
		return silentExit(2)
	}
	switch e.Args[0] {
	case "run":
		return runSandboxRun(ctx, env{Args: e.Args[1:], Stdin: e.Stdin, Stdout: e.Stdout, Stderr: e.Stderr})
	case "doctor":
		return runSandboxDoctor(ctx, env{Args: e.Args[1:], Stdin: e.Stdin, Stdout: e.Stdout, Stderr: e.Stderr})
	case "-h", "--help", "help":
		fmt.Fprintf(e.Stdout, "usage: airlock sandbox %s\n\nrun: run a program or code isolated and limited (see airlock sandbox run --help)\ndoctor: report which backends and mechanisms this machine supports\n", sandboxUsage)
		return nil
	}
	return usageErr("sandbox: unknown subcommand %q (run or doctor)", e.Args[0])
}

var sandboxEnvNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// sandboxSizeFlag is a byte-size flag ("256MiB", "1G", "1048576").
type sandboxSizeFlag struct{ n int64 }

func (s *sandboxSizeFlag) String() string {
	if s == nil || s.n == 0 {
		return ""
	}
	return fmt.Sprint(s.n)
}

func (s *sandboxSizeFlag) Set(v string) error {
	n, err := policy.ParseSize(v)
	if err != nil {
		return err
	}
	s.n = n
	return nil
}

func runSandboxRun(ctx context.Context, e env) error {
	fs := newFlags(e, "sandbox run", "[flags] -- CMD [ARG…]  |  [flags] --lang L --code CODE|--code-file FILE|-")
	backend := fs.String("backend", sandbox.DefaultBackend, "backend: "+strings.Join(sandbox.Backends, ", "))
	timeout := fs.Duration("timeout", 0, "wall-clock limit (default 30s)")
	cpuTime := fs.Duration("cpu-time", 0, "CPU time limit (default 60s)")
	var memory, fileSize, tmpSize, output sandboxSizeFlag
	fs.Var(&memory, "memory", "memory limit, e.g. 256MiB (default 512MiB)")
	fs.Var(&fileSize, "file-size", "largest file the program may write (default 64MiB)")
	fs.Var(&tmpSize, "tmp-size", "size of /tmp (default 64MiB)")
	fs.Var(&output, "output", "output kept per stream, head and tail (default 1MiB)")
	pids := fs.Int64("pids", 0, "process/thread limit (default 128)")
	cpus := fs.Float64("cpus", 0, "CPU quota in CPUs (default 1)")
	network := fs.String("network", sandbox.NetworkOff, "network: off (allowlist needs --allow)")
	allow := fs.String("allow", "", "comma-separated hosts for network allowlist mode")
	workspace := fs.String("workspace", "", "host directory bound at /workspace (read-only unless --rw)")
	rw := fs.Bool("rw", false, "bind the workspace read-write")
	env := map[string]string{}
	fs.Func("env", "K=V to set, or K to pass from this environment (repeatable)", func(v string) error {
		k, val, hasVal := strings.Cut(v, "=")
		if !sandboxEnvNameRe.MatchString(k) {
			return fmt.Errorf("%q is not an environment variable name", k)
		}
		if !hasVal {
			val = os.Getenv(k)
		}
		env[k] = val
		return nil
	})
	lang := fs.String("lang", "", "run code in this language: python, shell, bash")
	code := fs.String("code", "", "the code to run with --lang ('-' reads it from stdin)")
	codeFile := fs.String("code-file", "", "read the code from FILE ('-' for stdin)")
	stdinFile := fs.String("stdin", "", "file given to the program as stdin ('-' for this stdin); default empty")
	asJSON := fs.Bool("json", false, "print the result as JSON instead of the program's output")
	if err := parseFlags(fs, e.Args); err != nil {
		return err
	}
	argv := fs.Args()

	spec := sandbox.Spec{
		Argv: argv, Env: env, Workspace: *workspace, WorkspaceRW: *rw,
		WallTimeout: *timeout, CPUTime: *cpuTime, Memory: memory.n, FileSize: fileSize.n,
		TmpSize: tmpSize.n, OutputCap: output.n, Pids: *pids, CPUs: *cpus,
	}
	if len(env) == 0 {
		spec.Env = nil
	}
	switch *network {
	case sandbox.NetworkOff:
		if *allow != "" {
			return usageErr("sandbox run: --allow needs --network allowlist")
		}
		spec.Network = sandbox.NetworkOff
	case sandbox.NetworkAllowlist:
		for _, h := range strings.Split(*allow, ",") {
			if h = strings.TrimSpace(h); h != "" {
				spec.Allow = append(spec.Allow, h)
			}
		}
		if len(spec.Allow) == 0 {
			return usageErr("sandbox run: --network allowlist needs --allow HOST[,HOST…]")
		}
		spec.Network = sandbox.NetworkAllowlist
	default:
		return usageErr("sandbox run: --network %q: want off or allowlist", *network)
	}
	if *rw && *workspace == "" {
		return usageErr("sandbox run: --rw needs --workspace")
	}
	stdinUsed := false
	readInput := func(what, name string) ([]byte, error) {
		if name == "-" {
			if stdinUsed {
				return nil, usageErr("sandbox run: stdin can feed only one of --code, --code-file, --stdin")
			}
			stdinUsed = true
			return io.ReadAll(e.Stdin)
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, &exitError{Code: 2, Err: fmt.Errorf("sandbox run: %s: %w", what, err)}
		}
		return b, nil
	}
	codeSet := *code != "" || *codeFile != ""
	switch {
	case *lang == "" && codeSet:
		return usageErr("sandbox run: --code and --code-file need --lang")
	case *lang != "" && len(argv) > 0:
		return usageErr("sandbox run: give either --lang with code or -- CMD, not both")
	case *lang != "" && !codeSet:
		return usageErr("sandbox run: --lang %s needs --code or --code-file", *lang)
	case *code != "" && *codeFile != "":
		return usageErr("sandbox run: give --code or --code-file, not both")
	case *lang == "" && len(argv) == 0:
		return usageErr("sandbox run: nothing to run (-- CMD… or --lang with --code)")
	}
	if *lang != "" {
		src := []byte(*code)
		if *codeFile != "" || *code == "-" {
			name := *codeFile
			if *code == "-" {
				name = "-"
			}
			b, err := readInput("code", name)
			if err != nil {
				return err
			}
			src = b
		}
		spec.Lang, spec.Source = *lang, string(src)
	}
	if *stdinFile != "" {
		b, err := readInput("stdin", *stdinFile)
		if err != nil {
			return err
		}
		spec.Stdin = b
	}

	r, err := sandbox.Open(*backend)
	if err != nil {
		return sandboxErr(err)
	}
	if c, ok := r.(interface{ Close(context.Context) error }); ok {
		defer c.Close(context.WithoutCancel(ctx))
	}
	res, err := r.Run(ctx, spec)
	if err != nil {
		return sandboxErr(err)
	}
	if *asJSON {
		if err := writeSandboxJSON(e.Stdout, r.Name(), res); err != nil {
			return err
		}
	} else {
		e.Stdout.Write(res.Stdout)
		e.Stderr.Write(res.Stderr)
		fmt.Fprintln(e.Stderr, sandboxSummary(r.Name(), res))
	}
	if code := sandboxExitCode(res); code != 0 {
		return silentExit(code)
	}
	return nil
}

// sandboxErr maps a refusal (or a bad spec) to exit 2, anything else to 1.
func sandboxErr(err error) error {
	if errors.Is(err, sandbox.ErrRefused) {
		return &exitError{Code: 2, Err: err}
	}
	return &exitError{Code: 1, Err: err}
}

// sandboxExitCode is the program's exit code, or 1 when it was killed or
// stopped by a limit (never a code the shell would read as success).
func sandboxExitCode(res sandbox.Result) int {
	switch res.LimitHit {
	case sandbox.LimitTimeout, sandbox.LimitMemory, sandbox.LimitPids, sandbox.LimitCPU:
		if res.ExitCode == 0 {
			return 1
		}
	}
	if res.ExitCode < 0 || res.ExitCode > 255 {
		return 1
	}
	return res.ExitCode
}

// sandboxSummary is the one line printed on stderr after a run:
// "backend native · exit 0 · 31 ms · limit none".
func sandboxSummary(backend string, res sandbox.Result) string {
	status := fmt.Sprintf("exit %d", res.ExitCode)
	if res.Signal != "" {
		status = res.Signal
	}
	limit := res.LimitHit
	if limit == "" {
		limit = "none"
	}
	parts := []string{"backend " + backend, status, sandboxMS(res.Wall), "limit " + limit}
	if res.Truncated {
		parts = append(parts, fmt.Sprintf("output truncated (%d+%d bytes written)", res.StdoutBytes, res.StderrBytes))
	}
	return strings.Join(parts, " · ")
}

func sandboxMS(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
}

// sandboxJSON is `sandbox run --json`: the Execution the broker would
// report, plus byte counts and timings.
type sandboxJSON struct {
	airlock.Execution
	StdoutBytes int64 `json:"stdout_bytes"`
	StderrBytes int64 `json:"stderr_bytes"`
	SetupMS     int64 `json:"setup_ms"`
	CPUTimeMS   int64 `json:"cpu_time_ms"`
}

func writeSandboxJSON(w io.Writer, backend string, res sandbox.Result) error {
	out := sandboxJSON{
		Execution: airlock.Execution{
			Backend: backend, ExitCode: res.ExitCode, Signal: res.Signal,
			Stdout: string(res.Stdout), Stderr: string(res.Stderr),
			DurationMS: res.Wall.Milliseconds(), Truncated: res.Truncated, LimitHit: res.LimitHit,
			PeakMemory: res.PeakMemory, Isolation: res.Isolation, ChangedFile: res.Changed,
		},
		StdoutBytes: res.StdoutBytes, StderrBytes: res.StderrBytes,
		SetupMS: res.Setup.Milliseconds(), CPUTimeMS: res.CPUTime.Milliseconds(),
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func runSandboxDoctor(ctx context.Context, e env) error {
	fs := newFlags(e, "sandbox doctor", "[--json]")
	asJSON := fs.Bool("json", false, "print the reports as JSON")
	if err := parseFlags(fs, e.Args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("sandbox doctor: unexpected argument %q", fs.Arg(0))
	}
	reports := sandbox.Doctor(ctx)
	if *asJSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			return err
		}
	} else {
		printDoctor(e.Stdout, reports)
	}
	for _, r := range reports {
		if r.Name == sandbox.DefaultBackend && !r.Available {
			if !*asJSON {
				fmt.Fprintf(e.Stderr, "airlock: the default backend (%s) is unavailable: %s\n", r.Name, r.Detail)
			}
			return silentExit(1)
		}
	}
	return nil
}

func printDoctor(w io.Writer, reports []sandbox.BackendReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tAVAILABLE\tDETAIL")
	for _, r := range reports {
		avail := "no"
		if r.Available {
			avail = "yes"
		}
		name := r.Name
		if name == sandbox.DefaultBackend {
			name += " (default)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, avail, r.Detail)
	}
	tw.Flush()
	for _, r := range reports {
		if len(r.Mechanisms) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", r.Name)
		keys := make([]string, 0, len(r.Mechanisms))
		for k := range r.Mechanisms {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, k := range keys {
			v := r.Mechanisms[k]
			if v == "" {
				v = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\n", k, v)
		}
		tw.Flush()
	}
}
