package risk

import "strings"

// unpuny decodes the xn-- labels of a host name (RFC 3492 punycode), so
// look-alike checks see the characters a browser would show.
func unpuny(host string) string {
	if !strings.Contains(host, "xn--") {
		return host
	}
	labels := strings.Split(host, ".")
	for i, l := range labels {
		if strings.HasPrefix(strings.ToLower(l), "xn--") {
			if d, ok := punyDecode(strings.ToLower(l[4:])); ok {
				labels[i] = d
			}
		}
	}
	return strings.Join(labels, ".")
}

const (
	pyBase        = 36
	pyTMin        = 1
	pyTMax        = 26
	pySkew        = 38
	pyDamp        = 700
	pyInitialBias = 72
	pyInitialN    = 128
)

func punyAdapt(delta, numPoints int, first bool) int {
	if first {
		delta /= pyDamp
	} else {
		delta /= 2
	}
	delta += delta / numPoints
	k := 0
	for delta > ((pyBase-pyTMin)*pyTMax)/2 {
		delta /= pyBase - pyTMin
		k += pyBase
	}
	return k + (pyBase-pyTMin+1)*delta/(delta+pySkew)
}

func punyDigit(c byte) (int, bool) {
	switch {
	case c >= '0' && c <= '9':
		return int(c-'0') + 26, true
	case c >= 'a' && c <= 'z':
		return int(c - 'a'), true
	case c >= 'A' && c <= 'Z':
		return int(c - 'A'), true
	}
	return 0, false
}

// punyDecode decodes one punycode label (without the xn-- prefix).
func punyDecode(s string) (string, bool) {
	if len(s) > 63 {
		return "", false
	}
	var out []rune
	pos := 0
	if b := strings.LastIndexByte(s, '-'); b >= 0 {
		for _, r := range s[:b] {
			if r >= 0x80 {
				return "", false
			}
			out = append(out, r)
		}
		pos = b + 1
	}
	n, i, bias := pyInitialN, 0, pyInitialBias
	for pos < len(s) {
		oldi, w := i, 1
		for k := pyBase; ; k += pyBase {
			if pos >= len(s) {
				return "", false
			}
			digit, ok := punyDigit(s[pos])
			pos++
			if !ok || digit > (1<<30-i)/w {
				return "", false
			}
			i += digit * w
			t := k - bias
			if t < pyTMin {
				t = pyTMin
			} else if t > pyTMax {
				t = pyTMax
			}
			if digit < t {
				break
			}
			if w > (1<<30)/(pyBase-t) {
				return "", false
			}
			w *= pyBase - t
		}
		bias = punyAdapt(i-oldi, len(out)+1, oldi == 0)
		n += i / (len(out) + 1)
		if n > 0x10FFFF {
			return "", false
		}
		i %= len(out) + 1
		out = append(out, 0)
		copy(out[i+1:], out[i:])
		out[i] = rune(n)
		i++
	}
	return string(out), true
}
