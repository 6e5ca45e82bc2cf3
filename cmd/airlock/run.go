package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// env is what every subcommand gets: its arguments and the standard streams.
type env struct {
	Args   []string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// command is one subcommand of the airlock binary.
type command struct {
	Name    string
	Summary string
	Run     func(ctx context.Context, e env) error
}

var commands = map[string]command{}

// register adds a subcommand; each lives in its own cmd_*.go file.
func register(c command) {
	if _, dup := commands[c.Name]; dup {
		panic("airlock: duplicate command " + c.Name)
	}
	commands[c.Name] = c
}

// exitError carries a specific exit code. Usage and connection problems exit
// 2; a denied call exits 1 (airlock submit); anything else exits 1.
type exitError struct {
	Code int
	Err  error
}

func (e *exitError) Error() string {
	if e.Err == nil {
		return ""
	}
	return e.Err.Error()
}
func (e *exitError) Unwrap() error { return e.Err }

// usageErr is a usage mistake: exit 2.
func usageErr(format string, a ...any) error {
	return &exitError{Code: 2, Err: fmt.Errorf(format, a...)}
}

// silentExit ends the program with code and no message (the command already
// printed what it had to say).
func silentExit(code int) error { return &exitError{Code: code} }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stdout)
		if len(args) == 0 {
			return silentExit(2)
		}
		return nil
	}
	c, ok := commands[args[0]]
	if !ok {
		return usageErr("unknown command %q (see airlock --help)", args[0])
	}
	return c.Run(ctx, env{Args: args[1:], Stdin: stdin, Stdout: stdout, Stderr: stderr})
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "airlock: a human, a policy and a sandbox between AI agents and their tools")
	fmt.Fprintln(w, "\nusage: airlock COMMAND [flags]   (airlock COMMAND --help for its flags)\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].Summary)
	}
}

// exitCode maps an error to a process exit code, printing it as one line.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.Code
		if ee.Err == nil {
			return code
		}
	}
	msg := strings.TrimSpace(err.Error())
	if !strings.HasPrefix(msg, "airlock") {
		msg = "airlock: " + msg
	}
	fmt.Fprintln(stderr, strings.ReplaceAll(msg, "\n", " "))
	return code
}

// newFlags returns a FlagSet for a subcommand that reports errors as usage
// errors (exit 2) instead of exiting itself.
func newFlags(e env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("airlock "+name, flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.Stderr, "usage: airlock %s %s\n\nflags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, mapping -h to a clean exit and bad flags to exit 2.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{Code: 2} // the FlagSet already printed the problem and usage
	}
	return nil
}

// natsURLDefault is --nats's default: $AIRLOCK_NATS or the local broker.
func natsURLDefault() string {
	if u := os.Getenv("AIRLOCK_NATS"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// parseInterspersed parses flags that may come before, between or after
// positional arguments (`airlock review approve ID --reviewer bob`) and
// returns the positionals.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
