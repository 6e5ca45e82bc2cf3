package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Docker runs each Spec in a fresh, hardened container through the Docker
// Engine HTTP API: no network, read-only root filesystem, memory (and
// swap) limit, CPU quota, pids limit, no-new-privileges, every capability
// dropped, a size-capped tmpfs /tmp, an unprivileged user (nobody), the
// engine's default seccomp profile, rlimits, no logging driver (so a flood
// cannot fill the host's disk). Output is capped by our own collectors and
// the deadline is ours: at the wall limit the container is killed.
//
// It talks to the engine with net/http over the unix socket instead of
// github.com/docker/docker/client (or its successor
// github.com/moby/moby/client): both pull in ~20 modules, OpenTelemetry
// among them, for the seven endpoints used here.
type Docker struct {
	host    string // unix:///path or tcp://host:port
	http    *http.Client
	dial    func(ctx context.Context) (net.Conn, error)
	prefix  string // "/v1.47"
	images  map[string]string
	runtime string
	engine  string // engine version, for the isolation report
}

// DockerOption configures NewDocker.
type DockerOption func(*Docker)

// WithDockerHost sets the engine address (unix:///var/run/docker.sock,
// tcp://127.0.0.1:2375). Default: $DOCKER_HOST, else the default socket.
func WithDockerHost(host string) DockerOption { return func(d *Docker) { d.host = host } }

// WithDockerImage sets the image used for a language ("python", "shell",
// …); lang "" is the image for plain argv runs. Images are never pulled:
// they must be present on the engine.
func WithDockerImage(lang, image string) DockerOption {
	return func(d *Docker) { d.images[lang] = image }
}

// WithDockerRuntime selects an OCI runtime, e.g. "runsc" (gVisor).
func WithDockerRuntime(name string) DockerOption { return func(d *Docker) { d.runtime = name } }

// DefaultDockerSocket is the engine's default unix socket.
const DefaultDockerSocket = "/var/run/docker.sock"

// dockerDrain is how long a run waits for the output stream after the
// container exited (a grandchild holding the pipe is gone with the
// container, but the engine may lag).
const dockerDrain = 2 * time.Second

// NewDocker returns the docker backend, or an error wrapping ErrRefused when
// no engine answers Ping.
func NewDocker(opts ...DockerOption) (*Docker, error) {
	d := &Docker{images: map[string]string{
		"":       "debian:stable-slim",
		"shell":  "debian:stable-slim",
		"python": "python:3-slim",
	}}
	for _, o := range opts {
		o(d)
	}
	if d.host == "" {
		d.host = os.Getenv("DOCKER_HOST")
	}
	if d.host == "" {
		d.host = "unix://" + DefaultDockerSocket
	}
	u, err := url.Parse(d.host)
	if err != nil {
		return nil, fmt.Errorf("%w: docker: bad host %q: %v", ErrRefused, d.host, err)
	}
	switch u.Scheme {
	case "unix":
		path := u.Path
		d.dial = func(ctx context.Context) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, "unix", path)
		}
	case "tcp", "http":
		if os.Getenv("DOCKER_TLS_VERIFY") != "" {
			return nil, fmt.Errorf("%w: docker: TLS engine connections are not supported", ErrRefused)
		}
		addr := u.Host
		d.dial = func(ctx context.Context) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, "tcp", addr)
		}
	default:
		return nil, fmt.Errorf("%w: docker: unsupported host %q (unix:// or tcp://)", ErrRefused, d.host)
	}
	d.http = &http.Client{Transport: &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return d.dial(ctx) },
		DisableKeepAlives: false,
		MaxIdleConns:      4,
		IdleConnTimeout:   30 * time.Second,
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := d.Ping(ctx); err != nil {
		return nil, err
	}
	var v struct{ Version string }
	if err := d.do(ctx, http.MethodGet, "/version", nil, &v); err == nil {
		d.engine = v.Version
	}
	return d, nil
}

// Name implements Runner.
func (d *Docker) Name() string { return "docker" }

// Ping checks that the engine answers, and learns its API version. An
// error wraps ErrRefused.
func (d *Docker) Ping(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%w: docker: no engine at %s: %v", ErrRefused, d.host, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "OK" {
		return fmt.Errorf("%w: docker: engine at %s answered %s", ErrRefused, d.host, resp.Status)
	}
	if v := resp.Header.Get("Api-Version"); v != "" && d.prefix == "" {
		d.prefix = "/v" + v
	}
	return nil
}

// dockerCreate is the body of POST /containers/create (the fields used).
type dockerCreate struct {
	Image           string
	Cmd             []string
	Env             []string
	User            string
	WorkingDir      string
	Hostname        string
	Labels          map[string]string
	NetworkDisabled bool
	AttachStdin     bool
	AttachStdout    bool
	AttachStderr    bool
	OpenStdin       bool
	StdinOnce       bool
	Tty             bool
	HostConfig      dockerHostConfig
}

type dockerHostConfig struct {
	NetworkMode    string
	ReadonlyRootfs bool
	Memory         int64
	MemorySwap     int64
	NanoCpus       int64
	PidsLimit      int64
	SecurityOpt    []string
	CapDrop        []string
	Tmpfs          map[string]string
	Mounts         []dockerMount `json:",omitempty"`
	Ulimits        []dockerUlimit
	Runtime        string `json:",omitempty"`
	AutoRemove     bool
	Init           bool
	IpcMode        string
	Privileged     bool
	LogConfig      dockerLogConfig
}

type dockerMount struct {
	Type     string
	Source   string
	Target   string
	ReadOnly bool
}

type dockerUlimit struct {
	Name string
	Soft int64
	Hard int64
}

type dockerLogConfig struct {
	Type string
}

// dockerUser is nobody:nogroup: the container never runs as root.
const dockerUser = "65534:65534"

// containerConfig builds the container for spec (defaults applied) with
// image and OCI runtime. It is pure: everything the engine is asked to
// enforce is visible here, and unit-tested.
func containerConfig(spec Spec, image, runtime string) (dockerCreate, error) {
	argv, err := dockerArgv(spec)
	if err != nil {
		return dockerCreate{}, err
	}
	switch spec.Network {
	case "", NetworkOff:
	case NetworkAllowlist:
		return dockerCreate{}, fmt.Errorf("%w: docker: network allowlist mode is not implemented", ErrRefused)
	default:
		return dockerCreate{}, fmt.Errorf("%w: docker: unknown network mode %q", ErrRefused, spec.Network)
	}
	if len(spec.Module) > 0 {
		return dockerCreate{}, fmt.Errorf("%w: docker: wasm modules run on the wasm backend", ErrRefused)
	}
	mem := limitOrDefault(spec.Memory, Defaults.Memory)
	pids := limitOrDefault(spec.Pids, Defaults.Pids)
	tmp := limitOrDefault(spec.TmpSize, Defaults.TmpSize)
	fsize := limitOrDefault(spec.FileSize, Defaults.FileSize)
	nofile := limitOrDefault(spec.NoFile, Defaults.NoFile)
	cpuTime := limitOrDefault(spec.CPUTime, Defaults.CPUTime)
	cpus := spec.CPUs
	if cpus <= 0 {
		cpus = Defaults.CPUs
	}
	env := []string{"HOME=/workspace", "TMPDIR=/tmp", "LANG=C.UTF-8"}
	for k, v := range spec.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return dockerCreate{}, fmt.Errorf("sandbox: docker: bad environment variable %q", k)
		}
		env = append(env, k+"="+v)
	}
	slices.Sort(env[3:])
	tmpfsOpts := func(size int64) string {
		return "rw,noexec,nosuid,nodev,size=" + strconv.FormatInt(size, 10)
	}
	c := dockerCreate{
		Image:           image,
		Cmd:             argv,
		Env:             env,
		User:            dockerUser,
		WorkingDir:      "/workspace",
		Hostname:        "sandbox",
		Labels:          map[string]string{"airlock.sandbox": "1"},
		NetworkDisabled: true,
		AttachStdin:     true,
		AttachStdout:    true,
		AttachStderr:    true,
		OpenStdin:       true,
		StdinOnce:       true,
		HostConfig: dockerHostConfig{
			NetworkMode:    "none",
			ReadonlyRootfs: true,
			Memory:         mem,
			MemorySwap:     mem, // no swap beyond the memory limit
			NanoCpus:       int64(cpus * 1e9),
			PidsLimit:      pids,
			SecurityOpt:    []string{"no-new-privileges"},
			CapDrop:        []string{"ALL"},
			Tmpfs:          map[string]string{"/tmp": tmpfsOpts(tmp), "/dev/shm": tmpfsOpts(tmp)},
			Ulimits: []dockerUlimit{
				{Name: "fsize", Soft: fsize, Hard: fsize},
				{Name: "nofile", Soft: nofile, Hard: nofile},
				{Name: "cpu", Soft: int64(cpuTime / time.Second), Hard: int64(cpuTime/time.Second) + 1},
				{Name: "core", Soft: 0, Hard: 0},
			},
			Runtime: runtime,
			// Not AutoRemove: the run inspects the exited container
			// (OOMKilled) and then removes it itself.
			AutoRemove: false,
			Init:       true, // a reaper as pid 1; killing the container kills all
			IpcMode:    "private",
			LogConfig:  dockerLogConfig{Type: "none"},
		},
	}
	if spec.Workspace != "" {
		c.HostConfig.Mounts = append(c.HostConfig.Mounts, dockerMount{
			Type: "bind", Source: spec.Workspace, Target: "/workspace", ReadOnly: !spec.WorkspaceRW,
		})
	} else {
		c.HostConfig.Tmpfs["/workspace"] = "rw,nosuid,nodev,size=" + strconv.FormatInt(tmp, 10)
	}
	for _, b := range spec.Binds {
		if !strings.HasPrefix(b.Source, "/") || !strings.HasPrefix(b.Target, "/") {
			return dockerCreate{}, fmt.Errorf("sandbox: docker: bind %s:%s: paths must be absolute", b.Source, b.Target)
		}
		c.HostConfig.Mounts = append(c.HostConfig.Mounts, dockerMount{
			Type: "bind", Source: b.Source, Target: b.Target, ReadOnly: !b.Writable,
		})
	}
	return c, nil
}

// dockerArgv derives the command from Argv or Lang + Source.
func dockerArgv(spec Spec) ([]string, error) {
	if spec.Lang == "" {
		if len(spec.Argv) == 0 {
			return nil, errors.New("sandbox: docker: empty argv")
		}
		return spec.Argv, nil
	}
	if len(spec.Argv) > 0 {
		return nil, errors.New("sandbox: docker: spec has both argv and lang")
	}
	switch spec.Lang {
	case "python", "python3":
		return []string{"python3", "-c", spec.Source}, nil
	case "shell", "sh":
		return []string{"/bin/sh", "-c", spec.Source}, nil
	case "bash":
		return []string{"/bin/bash", "-c", spec.Source}, nil
	}
	return nil, fmt.Errorf("%w: docker: language %q not supported", ErrRefused, spec.Lang)
}

func (d *Docker) image(spec Spec) string {
	lang := spec.Lang
	if lang == "python3" {
		lang = "python"
	}
	if lang == "sh" || lang == "bash" {
		lang = "shell"
	}
	if img, ok := d.images[lang]; ok {
		return img
	}
	return d.images[""]
}

// Run implements Runner.
func (d *Docker) Run(ctx context.Context, spec Spec) (Result, error) {
	start := time.Now()
	cfg, err := containerConfig(spec, d.image(spec), d.runtime)
	if err != nil {
		return Result{}, err
	}
	outCap := limitOrDefault(spec.OutputCap, Defaults.OutputCap)
	wall := limitOrDefault(spec.WallTimeout, Defaults.WallTimeout)

	var created struct{ Id string }
	if err := d.do(ctx, http.MethodPost, "/containers/create", cfg, &created); err != nil {
		return Result{}, fmt.Errorf("sandbox: docker: create (image %s): %w", cfg.Image, err)
	}
	id := created.Id
	defer func() {
		// Remove whatever happened, even when ctx is done.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		d.do(rctx, http.MethodDelete, "/containers/"+id+"?force=1&v=1", nil, nil)
	}()

	stream, err := d.attach(ctx, id)
	if err != nil {
		return Result{}, fmt.Errorf("sandbox: docker: attach: %w", err)
	}
	defer stream.Close()
	stdout, stderr := NewCollector(outCap), NewCollector(outCap)
	demuxed := make(chan error, 1)
	go func() { demuxed <- dockerDemux(stream.r, stdout, stderr) }()
	go func() {
		if len(spec.Stdin) > 0 {
			stream.conn.Write(spec.Stdin)
		}
		if cw, ok := stream.conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()

	if err := d.do(ctx, http.MethodPost, "/containers/"+id+"/start", nil, nil); err != nil {
		return Result{}, fmt.Errorf("sandbox: docker: start: %w", err)
	}
	res := Result{ExitCode: -1}
	res.Setup = time.Since(start)
	runStart := time.Now()

	// Our deadline: kill the container at the wall limit or when ctx ends.
	runCtx, cancel := context.WithTimeout(ctx, wall)
	defer cancel()
	waitCtx, waitCancel := context.WithTimeout(context.WithoutCancel(ctx), wall+time.Minute)
	defer waitCancel()
	waited := make(chan error, 1)
	var status struct {
		StatusCode int
		Error      *struct{ Message string }
	}
	go func() {
		waited <- d.do(waitCtx, http.MethodPost, "/containers/"+id+"/wait?condition=not-running", nil, &status)
	}()
	killed := ""
	select {
	case err = <-waited:
	case <-runCtx.Done():
		if ctx.Err() == nil {
			killed = LimitTimeout
		} else {
			killed = "cancelled"
		}
		kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		d.do(kctx, http.MethodPost, "/containers/"+id+"/kill?signal=KILL", nil, nil)
		kcancel()
		err = <-waited
	}
	res.Wall = time.Since(runStart)
	if err != nil {
		return Result{}, fmt.Errorf("sandbox: docker: wait: %w", err)
	}
	select {
	case <-demuxed:
	case <-time.After(dockerDrain):
		stream.Close()
		<-demuxed
	}

	var inspect struct {
		State struct {
			OOMKilled bool
			ExitCode  int
		}
	}
	ictx, icancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	d.do(ictx, http.MethodGet, "/containers/"+id+"/json", nil, &inspect)
	icancel()

	switch {
	case killed != "":
		res.Signal = "killed"
		if killed == LimitTimeout {
			res.LimitHit = LimitTimeout
		}
	case inspect.State.OOMKilled:
		res.Signal = "killed"
		res.LimitHit = LimitMemory
	case status.StatusCode > 128 && status.StatusCode < 160:
		// The main process died of a signal (the init reaper reports 128+n).
		res.Signal = signalName(status.StatusCode - 128)
	default:
		res.ExitCode = status.StatusCode
	}
	res.Stdout, res.StdoutBytes = stdout.Bytes(), stdout.Total()
	res.Stderr, res.StderrBytes = stderr.Bytes(), stderr.Total()
	res.Truncated = stdout.Truncated() || stderr.Truncated()
	if res.Truncated && res.LimitHit == "" {
		res.LimitHit = LimitOutput
	}
	res.Isolation = d.isolation(cfg)
	return res, nil
}

func signalName(n int) string {
	switch n {
	case 9:
		return "killed"
	case 15:
		return "terminated"
	case 6:
		return "aborted"
	case 11:
		return "segmentation fault"
	case 24:
		return "cpu time limit exceeded"
	case 25:
		return "file size limit exceeded"
	}
	return "signal " + strconv.Itoa(n)
}

// isolation is the effective isolation of a container built from cfg.
func (d *Docker) isolation(cfg dockerCreate) map[string]string {
	h := cfg.HostConfig
	rt := h.Runtime
	if rt == "" {
		rt = "runc (engine default)"
	}
	ws := "tmpfs scratch"
	for _, m := range h.Mounts {
		if m.Target == "/workspace" {
			ws = "read-only"
			if !m.ReadOnly {
				ws = "read-write"
			}
		}
	}
	return map[string]string{
		"backend":    "docker",
		"engine":     d.engine,
		"runtime":    rt,
		"image":      cfg.Image,
		"network":    "none",
		"rootfs":     "read-only",
		"user":       cfg.User,
		"caps":       "none (cap-drop ALL)",
		"nnp":        "no-new-privileges",
		"seccomp":    "engine default profile",
		"memory":     strconv.FormatInt(h.Memory, 10) + " bytes, no swap",
		"cpus":       strconv.FormatFloat(float64(h.NanoCpus)/1e9, 'f', -1, 64),
		"pids":       strconv.FormatInt(h.PidsLimit, 10),
		"tmp":        h.Tmpfs["/tmp"],
		"workspace":  ws,
		"logging":    "none",
		"init":       "docker-init reaper",
		"deadline":   "container killed at the wall limit",
		"output-cap": "head+tail collectors",
	}
}

// do sends one API request with an optional JSON body and decodes a JSON
// answer into out (when non-nil). Non-2xx answers are errors carrying the
// engine's message.
func (d *Docker) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://docker"+d.prefix+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e struct{ Message string }
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		return fmt.Errorf("engine: %s: %s", resp.Status, e.Message)
	}
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out)
}

// dockerStream is a hijacked attach connection.
type dockerStream struct {
	conn net.Conn
	r    io.Reader
}

func (s *dockerStream) Close() error { return s.conn.Close() }

// attach opens the container's multiplexed stdin/stdout/stderr stream
// (POST /containers/{id}/attach, upgraded to a raw stream).
func (d *Docker) attach(ctx context.Context, id string) (*dockerStream, error) {
	conn, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost,
		"http://docker"+d.prefix+"/containers/"+id+"/attach?stream=1&stdin=1&stdout=1&stderr=1", nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "tcp")
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols && resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		conn.Close()
		return nil, fmt.Errorf("engine: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	conn.SetDeadline(time.Time{})
	return &dockerStream{conn: conn, r: br}, nil
}

// dockerDemux splits the engine's multiplexed stream (8-byte headers:
// stream id, 3 zero bytes, big-endian payload length) into stdout and
// stderr. Stream 3 (the engine's own errors) goes to stderr; stdin echoes
// are dropped. It never buffers a whole frame: memory stays bounded
// whatever lengths the stream claims. It returns nil at a clean EOF.
func dockerDemux(r io.Reader, stdout, stderr io.Writer) error {
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("sandbox: docker: stream header: %w", err)
		}
		var w io.Writer
		switch hdr[0] {
		case 0:
			w = io.Discard
		case 1:
			w = stdout
		case 2, 3:
			w = stderr
		default:
			return fmt.Errorf("sandbox: docker: stream: bad stream id %d", hdr[0])
		}
		n := int64(binary.BigEndian.Uint32(hdr[4:]))
		if got, err := io.CopyN(w, r, n); err != nil {
			return fmt.Errorf("sandbox: docker: stream: frame cut at %d of %d bytes: %w", got, n, err)
		}
	}
}
