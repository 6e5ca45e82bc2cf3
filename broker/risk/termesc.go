package risk

import (
	"fmt"
	"strings"
)

// termCheck finds raw terminal control sequences: ESC-introduced CSI, OSC,
// DCS and friends, C1 controls, and the C0 controls that rewrite what a
// reviewer sees (backspace, bare carriage return). Escape codes written as
// text ("\x1b[31m", "^[[31m", "\033") are not controls and never count.
func termCheck(s string) (float64, string) {
	if !hasControl(s) {
		return 0, ""
	}
	best, detail := 0.0, ""
	note := func(w float64, d string) {
		if w > best {
			best, detail = w, d
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0x1b:
			w, d, n := escSequence(s[i:])
			note(w, d)
			i += max(n-1, 0)
		case c == 0xc2 && i+1 < len(s) && s[i+1] >= 0x80 && s[i+1] <= 0x9f:
			// U+0080–U+009F, C1 controls (U+009B is a one-byte CSI).
			names := map[byte]string{0x9b: "CSI", 0x9d: "OSC", 0x90: "DCS", 0x9e: "PM", 0x9f: "APC", 0x8d: "RI"}
			n := names[s[i+1]]
			if n == "" {
				n = fmt.Sprintf("U+%04X", rune(s[i+1]))
			}
			note(1, "C1 control "+n+" in the text")
			i++
		case c == 0x08:
			note(0.8, "backspace characters overwrite displayed text")
		case c == '\r' && (i+1 >= len(s) || s[i+1] != '\n'):
			if i+1 < len(s) {
				note(0.6, "bare carriage return can overwrite the displayed line")
			}
		case c == 0x07:
			note(0.3, "BEL control character")
		case c < 0x20 && c != '\n' && c != '\t' && c != '\r':
			note(0.3, fmt.Sprintf("control character 0x%02X", c))
		case c == 0x7f:
			note(0.3, "DEL control character")
		}
	}
	return best, detail
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f || (c == 0xc2 && i+1 < len(s) && s[i+1] >= 0x80 && s[i+1] <= 0x9f) {
			return true
		}
	}
	return false
}

// escSequence classifies the escape sequence at the start of s and returns
// its weight, a description and its length.
func escSequence(s string) (float64, string, int) {
	if len(s) < 2 {
		return 0.8, "lone ESC character", 1
	}
	switch s[1] {
	case '[': // CSI: parameters, then a final byte 0x40–0x7e
		j := 2
		for j < len(s) && s[j] >= 0x20 && s[j] <= 0x3f {
			j++
		}
		if j >= len(s) {
			return 0.8, "unterminated CSI sequence", j
		}
		final := s[j]
		params := s[2:j]
		seq := "ESC[" + params + string(final)
		switch final {
		case 'm':
			for _, p := range strings.Split(params, ";") {
				if p == "8" {
					return 1, "conceal escape " + seq + " hides text", j + 1
				}
			}
			return 0.85, "colour escape " + seq + " restyles displayed text", j + 1
		case 'J':
			return 1, "erase-display escape " + seq + " clears the screen", j + 1
		case 'K':
			return 1, "erase-line escape " + seq + " hides text", j + 1
		case 'H', 'f', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'd', 's', 'u':
			return 1, "cursor-movement escape " + seq + " can paint over text", j + 1
		case 'h', 'l':
			return 0.9, "terminal mode escape " + seq, j + 1
		case 'n', 'c', 't', 'q':
			return 0.9, "terminal query/report escape " + seq, j + 1
		}
		return 0.9, "CSI escape " + seq, j + 1
	case ']': // OSC: up to BEL or ST
		j := 2
		for j < len(s) && s[j] != 0x07 && !(s[j] == 0x1b && j+1 < len(s) && s[j+1] == '\\') {
			j++
		}
		body := s[2:j]
		n := j + 1
		if j < len(s) && s[j] == 0x1b {
			n = j + 2
		}
		code := body
		if k := strings.IndexByte(body, ';'); k >= 0 {
			code = body[:k]
		}
		switch code {
		case "52":
			return 1, "OSC 52 escape writes the reviewer's clipboard", n
		case "8":
			return 0.9, "OSC 8 hyperlink escape hides a link target", n
		case "0", "1", "2":
			return 0.9, "OSC " + code + " escape sets the terminal title", n
		}
		return 1, "OSC " + clip(code, 8) + " escape sequence", n
	case 'P':
		return 1, "DCS escape sequence (device control)", 2
	case 'c':
		return 1, "ESC c resets the terminal", 2
	case '_', '^', 'X':
		return 1, "APC/PM/SOS escape sequence", 2
	case '7', '8', 'M', 'D', 'E':
		return 1, "cursor save/restore/index escape can paint over text", 2
	case '(', ')', '*', '+':
		return 0.8, "character-set switch escape", 3
	}
	return 0.8, fmt.Sprintf("escape sequence ESC %q", s[1]), 2
}
