package policy

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseDuration parses a Go duration ("90s", "10m", "1h30m") extended with a
// day unit: "7d", "1d12h". Negative durations are refused. A bare number other
// than 0 is refused too, since it is ambiguous ("600" seconds? minutes?).
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if s == "0" {
		return 0, nil
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return 0, fmt.Errorf("duration %q needs a unit (s, m, h or d, e.g. 10m)", s)
	}
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseUint(strings.TrimPrefix(s[:i], "+"), 10, 32)
		if err != nil || i == 0 {
			return 0, fmt.Errorf("invalid duration %q (use e.g. 30s, 10m, 24h, 7d)", s)
		}
		if n > 100000 {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		days = time.Duration(n) * 24 * time.Hour
		s = s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use e.g. 30s, 10m, 24h, 7d)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	if days > 0 && d > math.MaxInt64-days {
		return 0, fmt.Errorf("duration %q is too long", s)
	}
	return days + d, nil
}

// sizeUnits maps a unit suffix (lower case) to its factor. Binary units
// (KiB, MiB, GiB, TiB) and the single letters K, M, G, T (as docker and ulimit
// read them) are powers of 1024; KB, MB, GB, TB are powers of 1000.
var sizeUnits = map[string]float64{
	"":    1,
	"b":   1,
	"k":   1 << 10,
	"kib": 1 << 10,
	"kb":  1e3,
	"m":   1 << 20,
	"mib": 1 << 20,
	"mb":  1e6,
	"g":   1 << 30,
	"gib": 1 << 30,
	"gb":  1e9,
	"t":   1 << 40,
	"tib": 1 << 40,
	"tb":  1e12,
}

// ParseSize parses a byte size: a plain number of bytes ("1048576") or a
// number with a unit ("256MiB", "1GiB", "512M", "1.5G", "10MB"). KiB/MiB/GiB
// and K/M/G are binary (1024-based), KB/MB/GB decimal. Units are not case
// sensitive.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty size")
	}
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	if num == "" {
		return 0, fmt.Errorf("invalid size %q (use e.g. 512MiB, 1GiB, 64K)", s)
	}
	factor, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, KiB, MiB, GiB, TiB, K, M, G, KB, MB, GB)", s, s[i:])
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q (use e.g. 512MiB, 1GiB, 64K)", s)
	}
	v := f * factor
	if v >= 1<<62 || math.IsNaN(v) {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v), nil
}

// FormatSize renders bytes with the largest binary unit that divides it
// exactly, e.g. 268435456 → "256MiB".
func FormatSize(n int64) string {
	for _, u := range []struct {
		name string
		f    int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.f && n%u.f == 0 {
			return strconv.FormatInt(n/u.f, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
