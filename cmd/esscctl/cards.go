package main

// Design: the cards, clients and audit commands operate DIRECTLY on the
// registry database (--database, default the embedded SQLite under ./data)
// through card.Service and admin.Clients — the very code path and audit
// trail of the /admin/v1 API — with the registry keys from --keys (default
// ./data/keys, created on first use exactly as the server does). The actor
// recorded in the audit log is --operator (default "esscctl:$USER").

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/essc-project/essc/idp/admin"
	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/storage"
	essql "github.com/essc-project/essc/storage/sql"
)

const defaultKeyDir = "data/keys"

// regFlags are the flags every registry command shares.
type regFlags struct {
	database string
	keys     string
	operator string
	timeout  time.Duration
}

func (f *regFlags) register(fs *flag.FlagSet) {
	user := os.Getenv("USER")
	if user == "" {
		user = "unknown"
	}
	fs.StringVar(&f.database, "database", envOr("ESSC_DATABASE_URL", defaultDatabaseURL), "registry database URL: postgres://… or sqlite:///path (env ESSC_DATABASE_URL)")
	fs.StringVar(&f.keys, "keys", envOr("ESSC_KEY_DIR", defaultKeyDir), "registry key directory (env ESSC_KEY_DIR)")
	fs.StringVar(&f.operator, "operator", "esscctl:"+user, "actor recorded in the audit log")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "give up after this long")
}

// registry is an opened registry with the services over it.
type registry struct {
	store   *essql.Store
	secrets essql.Secrets
	cards   *card.Service
	actor   card.Actor
}

func (f *regFlags) open(ctx context.Context, stderr io.Writer) (*registry, error) {
	secrets, err := essql.LoadOrCreateSecrets(f.keys)
	if err != nil {
		return nil, err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := essql.Open(ctx, essql.Config{URL: f.database, Secrets: secrets, Logger: logger})
	if err != nil {
		return nil, err
	}
	svc, err := card.New(card.Config{Registry: store, PINKey: secrets.PINKey, Logger: logger})
	if err != nil {
		store.Close()
		return nil, err
	}
	return &registry{store: store, secrets: secrets, cards: svc, actor: card.Actor{ID: f.operator}}, nil
}

// parseInterleaved parses flags that may come before or after positional
// arguments (esscctl cards cancel A12345678 --reason death).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// describe turns a domain error into one operator-readable line (no PII:
// domain errors never carry values).
func describe(err error) error {
	switch {
	case errors.Is(err, card.ErrConflict):
		return fmt.Errorf("the card was changed by someone else (reload with 'cards show'): %w", err)
	case errors.Is(err, card.ErrUnavailable):
		return fmt.Errorf("registry unavailable: %w", err)
	}
	return err
}

var cardsUsage = `usage: esscctl cards <subcommand> [flags]

  add --ssn S --name N --number C --region R [--issued-on YYYY-MM-DD]
  show NUMBER
  report-loss NUMBER [--version V]
  unfreeze NUMBER [--version V]
  replace NUMBER --new-number C [--region R] [--version V]
  cancel NUMBER --reason death|emigration|other [--version V]
  unlock-pin NUMBER [--version V]
  reset-pin NUMBER [--version V]
  import FILE.csv [--report FILE] [--batch N] [--restart]

common flags: --database URL --keys DIR --operator ID --timeout D
`

// runCards implements `esscctl cards`.
func runCards(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, cardsUsage)
		if len(args) == 0 {
			return errors.New("missing subcommand")
		}
		return nil
	}
	sub, args := args[0], args[1:]
	if sub == "import" {
		return runImport(args, stdout, stderr)
	}
	fs := flag.NewFlagSet("cards "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf regFlags
	rf.register(fs)
	version := fs.Int64("version", 0, "expected card version (optimistic concurrency); 0 acts on the current one")
	var ssn, name, number, region, issuedOn, newNumber, reason string
	want := 1
	switch sub {
	case "add":
		want = 0
		fs.StringVar(&ssn, "ssn", "", "social security number (18 characters)")
		fs.StringVar(&name, "name", "", "holder name")
		fs.StringVar(&number, "number", "", "card number (9 characters)")
		fs.StringVar(&region, "region", "", "issuing region (6 digits)")
		fs.StringVar(&issuedOn, "issued-on", "", "issue date YYYY-MM-DD (default today)")
	case "replace":
		fs.StringVar(&newNumber, "new-number", "", "number of the new card")
		fs.StringVar(&region, "region", "", "region of the new card (default: the old card's)")
	case "cancel":
		fs.StringVar(&reason, "reason", "", "death | emigration | other")
	case "show", "report-loss", "unfreeze", "unlock-pin", "reset-pin":
	default:
		fmt.Fprint(stderr, cardsUsage)
		return fmt.Errorf("unknown subcommand %q", sub)
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != want {
		fmt.Fprint(stderr, cardsUsage)
		return fmt.Errorf("cards %s takes %d argument(s), got %d", sub, want, len(pos))
	}
	ctx, cancel := context.WithTimeout(context.Background(), rf.timeout)
	defer cancel()
	reg, err := rf.open(ctx, stderr)
	if err != nil {
		return err
	}
	defer reg.store.Close()
	var ref card.CardRef
	if want == 1 {
		ref = card.CardRef{Number: pos[0], Version: *version}
	}
	var c storage.Card
	switch sub {
	case "add":
		req := card.IssueRequest{SSN: ssn, Name: name, Number: number, Region: region}
		if issuedOn != "" {
			if req.IssuedOn, err = time.Parse(time.DateOnly, issuedOn); err != nil {
				return fmt.Errorf("--issued-on: want YYYY-MM-DD")
			}
		}
		is, err := reg.cards.IssueCard(ctx, reg.actor, req)
		if err != nil {
			return describe(err)
		}
		return printJSON(stdout, admin.CardToJSON(is.Card, &is.Holder, nil))
	case "show":
		v, err := reg.cards.Card(ctx, ref.Number)
		if err != nil {
			return describe(err)
		}
		return printJSON(stdout, admin.CardToJSON(v.Card, &v.Holder, v.ECard))
	case "replace":
		is, err := reg.cards.Replace(ctx, reg.actor, ref, card.ReplaceRequest{NewNumber: newNumber, Region: region})
		if err != nil {
			return describe(err)
		}
		return printJSON(stdout, admin.CardToJSON(is.Card, &is.Holder, nil))
	case "report-loss":
		c, err = reg.cards.ReportLoss(ctx, reg.actor, ref)
	case "unfreeze":
		c, err = reg.cards.Unfreeze(ctx, reg.actor, ref)
	case "cancel":
		c, err = reg.cards.Cancel(ctx, reg.actor, ref, storage.CancelReason(strings.TrimSpace(reason)))
	case "unlock-pin":
		c, err = reg.cards.UnlockPIN(ctx, reg.actor, ref)
	case "reset-pin":
		c, err = reg.cards.ResetPIN(ctx, reg.actor, ref)
	}
	if err != nil {
		return describe(err)
	}
	v, err := reg.cards.Card(ctx, c.Number)
	if err != nil {
		return describe(err)
	}
	return printJSON(stdout, admin.CardToJSON(v.Card, &v.Holder, v.ECard))
}
