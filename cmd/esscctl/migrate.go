package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	essql "github.com/essc-project/essc/storage/sql"
)

// defaultDatabaseURL is the embedded default registry of `make run`.
const defaultDatabaseURL = "sqlite://data/registry.db"

// runMigrate implements `esscctl migrate [--database URL]`: it applies the
// registry's pending schema migrations (the server also applies them on start;
// this lets operators migrate before rolling out replicas).
func runMigrate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := fs.String("database", envOr("ESSC_DATABASE_URL", defaultDatabaseURL),
		"registry database URL: postgres://… or sqlite:///path (env ESSC_DATABASE_URL)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: esscctl migrate [--database URL] [--timeout D]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	applied, err := essql.Migrate(ctx, *dbURL, logger)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "registry schema is up to date")
		return nil
	}
	for _, v := range applied {
		fmt.Fprintf(stdout, "applied migration %04d\n", v)
	}
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
