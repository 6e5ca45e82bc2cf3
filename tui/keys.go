package tui

import "charm.land/bubbles/v2/key"

// KeyMap is every key the console answers to. Decision keys (Approve, Deny,
// Edit, Split) are swallowed during the grace period after an item appears.
type KeyMap struct {
	Up, Down, Top, Bottom, PageUp, PageDown key.Binding
	Focus, Back                             key.Binding
	Approve, Deny, Edit, EditExternal       key.Binding
	Split, Diff, Expand                     key.Binding
	// Grant approves the call and grants similar ones for a while; Revoke
	// (in the Grants view) ends the selected grant.
	Grant, Revoke                        key.Binding
	Filter, NextTab, PrevTab, Help, Quit key.Binding
}

// DefaultKeyMap returns the console's standard keys.
func DefaultKeyMap() KeyMap {
	return KeyMap{
		Up:           key.NewBinding(key.WithKeys("k", "up"), key.WithHelp("↑/k", "up")),
		Down:         key.NewBinding(key.WithKeys("j", "down"), key.WithHelp("↓/j", "down")),
		Top:          key.NewBinding(key.WithKeys("g", "home"), key.WithHelp("g", "top")),
		Bottom:       key.NewBinding(key.WithKeys("G", "end"), key.WithHelp("G", "bottom")),
		PageUp:       key.NewBinding(key.WithKeys("pgup", "ctrl+u"), key.WithHelp("pgup", "page up")),
		PageDown:     key.NewBinding(key.WithKeys("pgdown", "ctrl+d"), key.WithHelp("pgdn", "page down")),
		Focus:        key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "focus detail")),
		Back:         key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back / clear filter")),
		Approve:      key.NewBinding(key.WithKeys("a"), key.WithHelp("a", "approve")),
		Deny:         key.NewBinding(key.WithKeys("d"), key.WithHelp("d", "deny (with reason)")),
		Edit:         key.NewBinding(key.WithKeys("e"), key.WithHelp("e", "approve with edits")),
		EditExternal: key.NewBinding(key.WithKeys("E"), key.WithHelp("E", "edit in $EDITOR")),
		Split:        key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "split member out of batch")),
		Grant:        key.NewBinding(key.WithKeys("A"), key.WithHelp("A", "approve similar for N minutes (grant)")),
		Revoke:       key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "revoke grant (Grants view)")),
		Diff:         key.NewBinding(key.WithKeys("v", "D"), key.WithHelp("v/D", "full / diff view")),
		Expand:       key.NewBinding(key.WithKeys("x"), key.WithHelp("x", "expand long values")),
		Filter:       key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter (agent:, tool:, text)")),
		NextTab:      key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab", "next view")),
		PrevTab:      key.NewBinding(key.WithKeys("shift+tab"), key.WithHelp("shift+tab", "previous view")),
		Help:         key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
		Quit:         key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
	}
}

// ShortHelp is the one-line help under the status bar.
func (k KeyMap) ShortHelp() []key.Binding {
	return []key.Binding{k.Approve, k.Deny, k.Edit, k.Filter, k.NextTab, k.Help, k.Quit}
}

// FullHelp is the Help view.
func (k KeyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{
		{k.Up, k.Down, k.Top, k.Bottom, k.PageUp, k.PageDown},
		{k.Approve, k.Deny, k.Edit, k.EditExternal, k.Split, k.Grant, k.Revoke},
		{k.Focus, k.Back, k.Diff, k.Expand, k.Filter},
		{k.NextTab, k.PrevTab, k.Help, k.Quit},
	}
}
