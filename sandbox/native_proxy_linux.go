//go:build linux

package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// relayPort is where the in-sandbox relay listens (127.0.0.1): programs see
// HTTP_PROXY=http://127.0.0.1:3128 and Landlock lets them connect to this
// port only.
const relayPort = 3128

// allowRule is one normalized Spec.Allow entry.
type allowRule struct {
	host  string // "example.com", "*.example.com" (suffix), "*" (any name)
	ports []int  // allowed ports (default 80, 443)
}

// parseAllow normalizes the allow-list: lower case, no trailing dot,
// optional ":port"; an empty or malformed list is a configuration error.
func parseAllow(entries []string) ([]allowRule, error) {
	if len(entries) == 0 {
		return nil, errors.New("allowlist mode with an empty allow-list")
	}
	var rules []allowRule
	for _, e := range entries {
		e = strings.TrimSpace(strings.ToLower(e))
		r := allowRule{ports: []int{80, 443}}
		if h, p, err := net.SplitHostPort(e); err == nil {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("allow entry %q: bad port", e)
			}
			e, r.ports = h, []int{n}
		}
		e = strings.TrimSuffix(e, ".")
		if e == "" || strings.ContainsAny(e, "/@ \t") || (strings.Contains(e, "*") && e != "*" && !strings.HasPrefix(e, "*.")) || strings.Count(e, "*") > 1 {
			return nil, fmt.Errorf("allow entry %q: want host, *.domain or *", e)
		}
		r.host = e
		rules = append(rules, r)
	}
	return rules, nil
}

// normHost lower-cases a request host and drops one trailing dot.
func normHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}

// allowed reports whether host:port matches a rule. IP literals match only
// a rule naming that exact address ("*" never covers them).
func allowed(rules []allowRule, host string, port int) bool {
	host = normHost(host)
	_, ipErr := netip.ParseAddr(strings.Trim(host, "[]"))
	isIP := ipErr == nil
	for _, r := range rules {
		if !containsInt(r.ports, port) {
			continue
		}
		switch {
		case r.host == host:
			return true
		case isIP:
			continue
		case r.host == "*":
			return true
		case strings.HasPrefix(r.host, "*.") && strings.HasSuffix(host, r.host[1:]):
			return true
		}
	}
	return false
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// publicAddr is the default address policy: never loopback, private
// (RFC 1918, ULA fc00::/7), link-local (metadata 169.254.169.254), CGNAT,
// unspecified or multicast addresses, whatever the allow-list says.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() ||
		a.IsLinkLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || !a.IsGlobalUnicast() {
		return false
	}
	for _, p := range []netip.Prefix{
		netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("0.0.0.0/8"),
		netip.MustParsePrefix("192.0.0.0/24"), netip.MustParsePrefix("198.18.0.0/15"),
		netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("64:ff9b::/96"),
	} {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// proxyHooks let tests stand in for DNS and "public" addresses.
type proxyHooks struct {
	resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	permit  func(netip.Addr) bool
}

// allowProxy is the host side of allowlist mode: an HTTP proxy (CONNECT and
// absolute-form requests) on a per-run Unix socket bind-mounted into the
// sandbox. It decides per destination, resolves names itself (never trusting
// the sandbox's idea of an address), dials the resolved address, and counts
// and logs every denial.
type allowProxy struct {
	rules   []allowRule
	hooks   proxyHooks
	log     *slog.Logger
	ln      net.Listener
	srv     *http.Server
	denied  atomic.Int64
	allowed atomic.Int64
	wg      sync.WaitGroup
}

func newAllowProxy(rules []allowRule, ln net.Listener, hooks proxyHooks, log *slog.Logger) *allowProxy {
	p := &allowProxy{rules: rules, hooks: hooks, log: log, ln: ln}
	if p.hooks.resolve == nil {
		p.hooks.resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if p.hooks.permit == nil {
		p.hooks.permit = publicAddr
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_ = p.srv.Serve(ln)
	}()
	return p
}

func (p *allowProxy) close() {
	_ = p.srv.Close()
	p.wg.Wait()
}

func (p *allowProxy) deny(w http.ResponseWriter, r *http.Request, why string) {
	p.denied.Add(1)
	p.log.Info("sandbox proxy denied", "method", r.Method, "target", r.Host, "url", r.URL.String(), "reason", why)
	http.Error(w, "airlock sandbox: destination not allowed: "+why, http.StatusForbidden)
}

// dial resolves host and connects to the first permitted address.
func (p *allowProxy) dial(ctx context.Context, host string, port int) (net.Conn, error) {
	host = normHost(host)
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		addrs = []netip.Addr{a}
	} else {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err = p.hooks.resolve(rctx, host)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
	}
	for _, a := range addrs {
		if !p.hooks.permit(a) {
			// One forbidden address denies the name: no DNS games.
			return nil, fmt.Errorf("%s resolves to forbidden address %s", host, a)
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s has no address", host)
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	return d.DialContext(ctx, "tcp", netip.AddrPortFrom(addrs[0].Unmap(), uint16(port)).String())
}

func (p *allowProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		p.connect(w, r)
		return
	}
	if !r.URL.IsAbs() || r.URL.Scheme != "http" {
		p.deny(w, r, "only absolute http:// requests and CONNECT are proxied")
		return
	}
	host := r.URL.Hostname()
	port := 80
	if s := r.URL.Port(); s != "" {
		port, _ = strconv.Atoi(s)
	}
	// The Host header must name the same destination as the URL.
	if r.Host != "" && normHost(hostOnly(r.Host)) != normHost(host) {
		p.deny(w, r, "Host header differs from the request target")
		return
	}
	if !allowed(p.rules, host, port) {
		p.deny(w, r, "not in the allow-list")
		return
	}
	conn, err := p.dial(r.Context(), host, port)
	if err != nil {
		p.deny(w, r, err.Error())
		return
	}
	defer conn.Close()
	p.allowed.Add(1)
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Header.Del("Proxy-Connection")
	out.Header.Del("Proxy-Authorization")
	out.Close = true
	if err := out.Write(conn); err != nil {
		http.Error(w, "airlock sandbox: upstream write failed", http.StatusBadGateway)
		return
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), out)
	if err != nil {
		http.Error(w, "airlock sandbox: upstream read failed", http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func hostOnly(hp string) string {
	if h, _, err := net.SplitHostPort(hp); err == nil {
		return h
	}
	return hp
}

func (p *allowProxy) connect(w http.ResponseWriter, r *http.Request) {
	host, ps, err := net.SplitHostPort(r.Host)
	if err != nil {
		p.deny(w, r, "CONNECT target must be host:port")
		return
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		p.deny(w, r, "bad port")
		return
	}
	if !allowed(p.rules, host, port) {
		p.deny(w, r, "not in the allow-list")
		return
	}
	up, err := p.dial(r.Context(), host, port)
	if err != nil {
		p.deny(w, r, err.Error())
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "airlock sandbox: no hijack", http.StatusInternalServerError)
		return
	}
	down, buf, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	_, _ = down.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	// A TLS client must name the CONNECT host in its SNI (no fronting a
	// listed address with another name); other protocols pass as they are.
	_ = down.SetReadDeadline(time.Now().Add(10 * time.Second))
	first, sni, isTLS := peekClientHello(buf.Reader)
	_ = down.SetReadDeadline(time.Time{})
	want := normHost(host)
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		want = "" // clients send no SNI for an address
	}
	if isTLS && normHost(sni) != want {
		p.denied.Add(1)
		p.log.Info("sandbox proxy denied", "method", r.Method, "target", r.Host, "sni", sni, "reason", "TLS SNI differs from the CONNECT host")
		up.Close()
		down.Close()
		return
	}
	p.allowed.Add(1)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, io.MultiReader(bytes.NewReader(first), buf)); done <- struct{}{} }()
	go func() { _, _ = io.Copy(down, up); done <- struct{}{} }()
	<-done
	up.Close()
	down.Close()
	<-done
}

// peekClientHello reads the first TLS record if the stream starts with one
// and returns the bytes read, the SNI and whether it was a TLS handshake.
func peekClientHello(r *bufio.Reader) (first []byte, sni string, isTLS bool) {
	hdr, err := r.Peek(5)
	if err != nil || hdr[0] != 0x16 || hdr[1] != 3 {
		return nil, "", false
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	rec := make([]byte, 5+n)
	if k, err := io.ReadFull(r, rec); err != nil {
		return rec[:k], "", true
	}
	// Let crypto/tls parse the ClientHello, then abort the handshake.
	errStop := errors.New("stop")
	srv := tls.Server(&replayConn{r: bytes.NewReader(rec)}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			sni = h.ServerName
			return nil, errStop
		},
	})
	_ = srv.Handshake()
	return rec, sni, true
}

// replayConn is a net.Conn that reads from r and discards writes.
type replayConn struct{ r io.Reader }

func (c *replayConn) Read(b []byte) (int, error)         { return c.r.Read(b) }
func (c *replayConn) Write(b []byte) (int, error)        { return len(b), nil }
func (c *replayConn) Close() error                       { return nil }
func (c *replayConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *replayConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *replayConn) SetDeadline(t time.Time) error      { return nil }
func (c *replayConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *replayConn) SetWriteDeadline(t time.Time) error { return nil }
