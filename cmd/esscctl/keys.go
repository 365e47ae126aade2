package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/essc-project/essc/signing"
)

// defaultSigningKeyDir is the signing key directory of the embedded default (`make run`).
const defaultSigningKeyDir = "data/keys"

const keysUsage = `usage: esscctl keys <generate|show|rotate> [--dir DIR] [--alg ALG[,ALG]] [--password-file F]

  generate  create an active key for each algorithm that has none (first start)
  show      list keys with their rotation state (--jwks: print the published JWKS)
  rotate    add a pending successor, or promote the pending one now (--alg required)`

// runKeys implements `esscctl keys`: it operates directly on a key directory
// (signing.KeyDir), so run it on the server's host with the server's user.
func runKeys(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, keysUsage)
		if len(args) == 0 {
			return errors.New("missing subcommand")
		}
		return nil
	}
	sub := args[0]
	fs := flag.NewFlagSet("keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", defaultSigningKeyDir, "key directory")
	algList := fs.String("alg", "", "comma-separated algorithms: SM2SM3, ES256, RS256 (default all)")
	pwFile := fs.String("password-file", "", "file holding the key-file password (encrypted PKCS#8); empty: plain files")
	jwks := fs.Bool("jwks", false, "show: print the JWKS (pending, active, retired) instead of the table")
	fs.Usage = func() { fmt.Fprintln(stderr, keysUsage); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	algs, err := parseAlgs(*algList)
	if err != nil {
		return err
	}
	password, err := readPassword(*pwFile)
	if err != nil {
		return err
	}
	now := time.Now()
	switch sub {
	case "generate":
		d, err := signing.OpenKeyDir(*dir, password, signing.KeySetConfig{})
		if err != nil {
			return err
		}
		made, err := d.Set().EnsureActive(now, algs...)
		if err != nil {
			return err
		}
		if len(made) == 0 {
			fmt.Fprintf(stdout, "every requested algorithm already has an active key in %s\n", *dir)
			return nil
		}
		if err := d.Save(); err != nil {
			return err
		}
		for _, k := range made {
			fmt.Fprintf(stdout, "active %s key %s\n", k.Alg(), k.ID())
		}
		return nil
	case "show":
		if _, err := os.Stat(*dir); err != nil {
			return fmt.Errorf("key directory: %w", err)
		}
		d, err := signing.OpenKeyDir(*dir, password, signing.KeySetConfig{})
		if err != nil {
			return err
		}
		if *jwks {
			b, err := json.MarshalIndent(d.Set().Publish(algs...), "", "  ")
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "%s\n", b)
			return err
		}
		return showKeys(stdout, d.Set().Entries(), algs, now)
	case "rotate":
		if *algList == "" {
			return errors.New("rotate needs --alg (e.g. --alg SM2SM3)")
		}
		if _, err := os.Stat(*dir); err != nil {
			return fmt.Errorf("key directory: %w", err)
		}
		d, err := signing.OpenKeyDir(*dir, password, signing.KeySetConfig{})
		if err != nil {
			return err
		}
		for _, alg := range algs {
			k, err := d.Rotate(alg, now)
			if err != nil {
				return err
			}
			for _, e := range d.Set().Entries() {
				if e.Key.ID() == k.ID() {
					fmt.Fprintf(stdout, "%s key %s is %s, signing from %s\n", alg, k.ID(), e.State(now), e.ActivateAt.UTC().Format(time.RFC3339))
				}
			}
		}
		return nil
	}
	fmt.Fprintln(stderr, keysUsage)
	return fmt.Errorf("unknown subcommand %q", sub)
}

func showKeys(w io.Writer, entries []signing.Entry, algs []string, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ALG\tKID\tSTATE\tPUBLISH\tACTIVATE\tRETIRE\tREMOVE")
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, e := range entries {
		if !contains(algs, e.Key.Alg()) {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Key.Alg(), e.Key.ID(), e.State(now),
			ts(e.PublishAt), ts(e.ActivateAt), ts(e.RetireAt), ts(e.RemoveAt))
	}
	return tw.Flush()
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// parseAlgs splits a comma-separated --alg value; empty means all algorithms.
func parseAlgs(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return signing.Algs(), nil
	}
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if !signing.SupportedAlg(a) {
			return nil, fmt.Errorf("--alg %q: want SM2SM3, ES256 or RS256", a)
		}
		if !contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// readPassword reads a password file, dropping one trailing newline; an empty
// path means no password (plain key files).
func readPassword(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	if len(b) == 0 {
		return nil, errors.New("password file is empty")
	}
	return b, nil
}
