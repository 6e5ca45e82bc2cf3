package tui

import (
	"context"
	"errors"
	"os"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"
)

// Run runs the console on the terminal (alternate screen) until the
// reviewer quits or ctx ends. Broker events are pumped from b.Events into
// the program. NO_COLOR (any non-empty value) turns colour off; bold,
// reverse and the text of every badge remain. Extra program options (input,
// output, environment, for a console served over SSH) may be passed.
func Run(ctx context.Context, b Backend, opts Options, popts ...tea.ProgramOption) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := New(b, opts)
	m.ctx = ctx
	all := []tea.ProgramOption{tea.WithContext(ctx)}
	if os.Getenv("NO_COLOR") != "" {
		all = append(all, tea.WithColorProfile(colorprofile.Ascii))
	}
	all = append(all, popts...)
	p := tea.NewProgram(m, all...)
	go func() {
		for ev := range b.Events(ctx) {
			p.Send(ev)
		}
	}()
	_, err := p.Run()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil // the caller's context ended: a normal shutdown
	}
	if err != nil {
		return errors.New("tui: " + err.Error())
	}
	return nil
}
