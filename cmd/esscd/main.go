// Command esscd is the essc server: the composition root that reads the
// configuration, opens the backends, wires the handlers and serves.
//
// This is the skeleton of issue 2: it loads or generates the signing keys
// under DATA/keys, serves /healthz, and shuts down gracefully on SIGINT or
// SIGTERM. Only main sets the process-wide logger.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/essc-project/essc/signing"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	slog.SetDefault(logger)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], logger); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		logger.Error("esscd stopped", "err", err)
		os.Exit(1)
	}
}

// options are the command-line flags.
type options struct {
	data            string
	listen          string
	demo            bool
	keyPasswordFile string
	shutdownTimeout time.Duration
	keyCheck        time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("esscd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.data, "data", "./data", "data directory (keys under DATA/keys)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "HTTP listen address")
	fs.BoolVar(&o.demo, "demo", false, "seed demonstration data (embedded default)")
	fs.StringVar(&o.keyPasswordFile, "key-password-file", os.Getenv("ESSC_KEY_PASSWORD_FILE"),
		"file with the password of encrypted signing key files (env ESSC_KEY_PASSWORD_FILE); empty: plain files")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "grace period for in-flight requests on SIGINT/SIGTERM")
	fs.DurationVar(&o.keyCheck, "key-check-interval", time.Hour, "how often the key rotation schedule is applied")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() != 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.shutdownTimeout <= 0 || o.keyCheck <= 0 {
		return o, errors.New("--shutdown-timeout and --key-check-interval must be positive")
	}
	return o, nil
}

// run starts the server and blocks until ctx is cancelled (a signal) and the
// server has shut down, or it fails to start.
func run(ctx context.Context, args []string, logger *slog.Logger) error {
	o, err := parseFlags(args, os.Stderr)
	if err != nil {
		return err
	}
	password, err := readPassword(o.keyPasswordFile)
	if err != nil {
		return err
	}
	keyDir := filepath.Join(o.data, "keys")
	keys, err := signing.OpenKeyDir(keyDir, password, signing.KeySetConfig{Now: time.Now})
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	made, err := keys.EnsureDefaults(time.Now())
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	for _, k := range made {
		logger.Info("generated signing key", "alg", k.Alg(), "kid", k.ID(), "dir", keyDir)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "ok")
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	logger.Info("esscd listening", "addr", ln.Addr().String(), "data", o.data, "demo", o.demo)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	go maintainKeys(ctx, keys, o.keyCheck, logger)

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	logger.Info("esscd shutting down", "timeout", o.shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("esscd stopped")
	return nil
}

// maintainKeys reloads the key directory and applies the rotation schedule
// (new pending keys, pruning) every interval until ctx ends.
func maintainKeys(ctx context.Context, keys *signing.KeyDir, every time.Duration, logger *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			// Pick up changes made by `esscctl keys` first, so Save never
			// overwrites them.
			if err := keys.Reload(); err != nil {
				logger.Error("reload signing keys", "err", err)
				continue
			}
			changed, err := keys.Maintain(now)
			if err != nil {
				logger.Error("key rotation", "err", err)
			} else if changed {
				logger.Info("key rotation schedule applied")
			}
		}
	}
}

// readPassword reads a password file, dropping one trailing newline.
func readPassword(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key password file: %w", err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return nil, errors.New("key password file is empty")
	}
	return []byte(s), nil
}
