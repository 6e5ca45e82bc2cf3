package tui

import (
	"image/color"

	"charm.land/bubbles/v2/help"
	"charm.land/lipgloss/v2"
)

// Styles is every style the console draws with. Colour is never the only
// signal: risk bands are spelled out and the selection has a marker, so the
// console reads the same under NO_COLOR.
type Styles struct {
	Title, Tab, ActiveTab                 lipgloss.Style
	Selected, Row, Dim, Greyed            lipgloss.Style
	Low, Medium, High, Critical           lipgloss.Style
	Header, Label, Value, Muted           lipgloss.Style
	Key, String, Number, Bool, Null, Punc lipgloss.Style
	SQLKeyword, LineNo                    lipgloss.Style
	Added, Removed, Changed               lipgloss.Style
	StatusBar, Connected, Disconnected    lipgloss.Style
	Info, Warn, Error, Notice             lipgloss.Style
	Help                                  help.Styles
}

// DefaultStyles returns the console's styles for a dark or light background.
func DefaultStyles(isDark bool) Styles {
	ld := lipgloss.LightDark(isDark)
	c := func(light, dark string) color.Color { return ld(lipgloss.Color(light), lipgloss.Color(dark)) }
	fg := func(light, dark string) lipgloss.Style { return lipgloss.NewStyle().Foreground(c(light, dark)) }
	badge := func(light, dark string) lipgloss.Style {
		return lipgloss.NewStyle().Bold(true).Foreground(c(light, dark))
	}
	return Styles{
		Title:        lipgloss.NewStyle().Bold(true).Foreground(c("#5A3FC0", "#B9A6FF")),
		Tab:          fg("#6B6B6B", "#8A8A8A"),
		ActiveTab:    lipgloss.NewStyle().Bold(true).Underline(true).Foreground(c("#1A1A1A", "#F2F2F2")),
		Selected:     lipgloss.NewStyle().Bold(true).Background(c("#DCD6F7", "#3B3260")),
		Row:          lipgloss.NewStyle(),
		Dim:          fg("#8A8A8A", "#6E6E6E"),
		Greyed:       lipgloss.NewStyle().Faint(true).Strikethrough(true),
		Low:          badge("#2E7D32", "#7BD88F"),
		Medium:       badge("#B26A00", "#F5C451"),
		High:         badge("#C62828", "#FF7A6B"),
		Critical:     lipgloss.NewStyle().Bold(true).Reverse(true).Foreground(c("#B71C1C", "#FF5C5C")),
		Header:       lipgloss.NewStyle().Bold(true).Foreground(c("#5A3FC0", "#B9A6FF")),
		Label:        fg("#6B6B6B", "#9A9A9A"),
		Value:        lipgloss.NewStyle(),
		Muted:        fg("#8A8A8A", "#6E6E6E"),
		Key:          fg("#1565C0", "#82AAFF"),
		String:       fg("#2E7D32", "#C3E88D"),
		Number:       fg("#B26A00", "#F78C6C"),
		Bool:         fg("#8E24AA", "#C792EA"),
		Null:         fg("#8A8A8A", "#6E6E6E"),
		Punc:         fg("#6B6B6B", "#89DDFF"),
		SQLKeyword:   lipgloss.NewStyle().Bold(true).Foreground(c("#8E24AA", "#C792EA")),
		LineNo:       fg("#9E9E9E", "#5C5C5C"),
		Added:        fg("#2E7D32", "#7BD88F"),
		Removed:      fg("#C62828", "#FF7A6B"),
		Changed:      fg("#B26A00", "#F5C451"),
		StatusBar:    lipgloss.NewStyle().Background(c("#E4E4E4", "#262626")),
		Connected:    lipgloss.NewStyle().Bold(true).Foreground(c("#2E7D32", "#7BD88F")),
		Disconnected: lipgloss.NewStyle().Bold(true).Foreground(c("#C62828", "#FF5C5C")),
		Info:         fg("#1565C0", "#82AAFF"),
		Warn:         lipgloss.NewStyle().Bold(true).Foreground(c("#B26A00", "#F5C451")),
		Error:        lipgloss.NewStyle().Bold(true).Foreground(c("#C62828", "#FF5C5C")),
		Notice:       lipgloss.NewStyle().Bold(true).Reverse(true).Foreground(c("#5A3FC0", "#B9A6FF")),
		Help:         help.DefaultStyles(isDark),
	}
}

// band returns the badge style for a risk band.
func (s *Styles) band(b string) lipgloss.Style {
	switch b {
	case "critical":
		return s.Critical
	case "high":
		return s.High
	case "medium":
		return s.Medium
	}
	return s.Low
}
