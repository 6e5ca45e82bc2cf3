package argdiff

import "strings"

// maxLCSCells bounds the LCS table; larger inputs fall back to replacing the
// differing middle whole.
const maxLCSCells = 4 << 20

// LineDiff diffs two texts line by line: common prefix and suffix are
// trimmed, then the middle is aligned by a longest-common-subsequence table.
// Applying the added and equal lines in order rebuilds b.
func LineDiff(a, b string) []LineEdit {
	al := splitLines(a)
	bl := splitLines(b)
	var out []LineEdit
	pre := 0
	for pre < len(al) && pre < len(bl) && al[pre] == bl[pre] {
		pre++
	}
	suf := 0
	for suf < len(al)-pre && suf < len(bl)-pre && al[len(al)-1-suf] == bl[len(bl)-1-suf] {
		suf++
	}
	for _, l := range al[:pre] {
		out = append(out, LineEdit{LineEqual, l})
	}
	out = append(out, lcs(al[pre:len(al)-suf], bl[pre:len(bl)-suf])...)
	for _, l := range al[len(al)-suf:] {
		out = append(out, LineEdit{LineEqual, l})
	}
	return out
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// lcs aligns two line slices with a dynamic-programming LCS table.
func lcs(a, b []string) []LineEdit {
	n, m := len(a), len(b)
	if n == 0 && m == 0 {
		return nil
	}
	if n*m > maxLCSCells || n == 0 || m == 0 {
		out := make([]LineEdit, 0, n+m)
		for _, l := range a {
			out = append(out, LineEdit{LineRemoved, l})
		}
		for _, l := range b {
			out = append(out, LineEdit{LineAdded, l})
		}
		return out
	}
	// t[i][j] = LCS length of a[i:] and b[j:], in one flat slice.
	w := m + 1
	t := make([]int32, (n+1)*w)
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				t[i*w+j] = t[(i+1)*w+j+1] + 1
			} else {
				t[i*w+j] = max(t[(i+1)*w+j], t[i*w+j+1])
			}
		}
	}
	out := make([]LineEdit, 0, n+m)
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case a[i] == b[j]:
			out = append(out, LineEdit{LineEqual, a[i]})
			i++
			j++
		case t[(i+1)*w+j] >= t[i*w+j+1]:
			out = append(out, LineEdit{LineRemoved, a[i]})
			i++
		default:
			out = append(out, LineEdit{LineAdded, b[j]})
			j++
		}
	}
	for ; i < n; i++ {
		out = append(out, LineEdit{LineRemoved, a[i]})
	}
	for ; j < m; j++ {
		out = append(out, LineEdit{LineAdded, b[j]})
	}
	return out
}

// Rebuild returns the new text of a line diff (equal and added lines).
func Rebuild(edits []LineEdit) string {
	var lines []string
	for _, e := range edits {
		if e.Op != LineRemoved {
			lines = append(lines, e.Text)
		}
	}
	return strings.Join(lines, "\n")
}

// Original returns the old text of a line diff (equal and removed lines).
func Original(edits []LineEdit) string {
	var lines []string
	for _, e := range edits {
		if e.Op != LineAdded {
			lines = append(lines, e.Text)
		}
	}
	return strings.Join(lines, "\n")
}
