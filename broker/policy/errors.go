package policy

import (
	"fmt"
	"strings"
)

// Error is one problem in a policy file: where it is (file, line and the
// field path, e.g. tools.read_file.rules[0].when) and what is wrong.
type Error struct {
	File string
	Line int
	Path string
	Msg  string
}

// Error formats the problem as "file:line: path: message".
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in a policy file, in file order. Load and
// Parse return one (as an error) when the file is invalid; callers that want
// one line per problem range over it with errors.As.
type ErrorList []*Error

// Error joins the problems on one line, so that a log line or a CLI error
// shows all of them.
func (l ErrorList) Error() string {
	switch len(l) {
	case 0:
		return "policy: no errors"
	case 1:
		return l[0].Error()
	}
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.Error()
	}
	return fmt.Sprintf("%s (%d problems)", strings.Join(parts, "; "), len(l))
}
