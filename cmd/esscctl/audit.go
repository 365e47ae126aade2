package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
)

// errAuditBroken makes `esscctl audit verify` exit non-zero on a broken chain.
var errAuditBroken = errors.New("audit chain broken")

// runAudit implements `esscctl audit verify|list`.
func runAudit(args []string, stdout, stderr io.Writer) error {
	const usage = "usage: esscctl audit verify | list [--after SEQ] [--limit N]   (common flags: --database --keys --timeout)\n"
	if len(args) == 0 || (args[0] != "verify" && args[0] != "list") {
		fmt.Fprint(stderr, usage)
		return errors.New("want subcommand verify or list")
	}
	sub := args[0]
	fs := flag.NewFlagSet("audit "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf regFlags
	rf.register(fs)
	after := fs.Int64("after", 0, "list entries after this sequence number")
	limit := fs.Int("limit", 100, "entries to list (1-10000)")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unexpected arguments %q", pos)
	}
	if *limit < 1 || *limit > 10000 {
		return errors.New("--limit must be 1-10000")
	}
	ctx, cancel := context.WithTimeout(context.Background(), rf.timeout)
	defer cancel()
	reg, err := rf.open(ctx, stderr)
	if err != nil {
		return err
	}
	defer reg.store.Close()
	if sub == "list" {
		es, err := reg.store.AuditEntries(ctx, *after, *limit)
		if err != nil {
			return describe(err)
		}
		for _, e := range es {
			fmt.Fprintf(stdout, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.At.UTC().Format("2006-01-02T15:04:05.000000Z"), e.Actor, e.Act, e.Action, e.Target, e.Details)
		}
		return nil
	}
	rep, err := reg.store.VerifyAudit(ctx)
	if err != nil {
		return describe(err)
	}
	if !rep.OK {
		fmt.Fprintf(stdout, "audit log BROKEN at entry %d after %d checked: %s\n", rep.FirstBad, rep.Entries, rep.Reason)
		return errAuditBroken
	}
	fmt.Fprintf(stdout, "audit log OK: %d entries verified\n", rep.Entries)
	return nil
}
