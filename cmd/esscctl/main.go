// Command esscctl is the operators' and outlets' tool: keys, clients, cards
// (including bulk import), migrations and the audit log.
//
// Each command group lives in its own file and registers itself in the
// commands table below; main only dispatches.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one top-level group such as "keys" or "cards".
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

// commands is the table of command groups. Add a line here when adding a file.
var commands = map[string]command{
	"migrate": {summary: "apply the registry's database migrations", run: runMigrate},
	"cards":   {summary: "issue cards and run their lifecycle (loss, unfreeze, replace, cancel, PIN); bulk import", run: runCards},
	"clients": {summary: "register, show, list and disable OAuth clients", run: runClients},
	"audit":   {summary: "verify or list the tamper-evident audit log", run: runAudit},
	"keys":    {summary: "generate, show and rotate the signing keys of a key directory", run: runKeys},
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs one command group and returns the process exit code.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "esscctl: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	if err := c.run(args[1:], stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "esscctl %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: esscctl <command> [arguments]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
}
