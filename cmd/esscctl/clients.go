package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/essc-project/essc/idp/admin"
	"github.com/essc-project/essc/idp/secret"
)

// listFlag is a repeatable string flag (--scope a --scope b, or --scope a,b).
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

var clientsUsage = `usage: esscctl clients <subcommand> [flags]

  add --id ID --name NAME --profile intl|gm --auth-method private_key_jwt|client_secret_basic
      [--jwks FILE] [--domain D] [--redirect-uri U]... [--post-logout-uri U]... [--grant-type G]...
      [--scope S]... [--purpose P]... [--sector S] [--backchannel-logout-uri U] [--webhook-url U] [--require-par]
  show ID
  list [--after ID] [--limit N]
  disable ID [--version V]

A client_secret_basic client's secret is printed ONCE by add; only its bcrypt hash is stored.
common flags: --database URL --keys DIR --operator ID --timeout D
`

// runClients implements `esscctl clients`.
func runClients(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, clientsUsage)
		if len(args) == 0 {
			return errors.New("missing subcommand")
		}
		return nil
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("clients "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf regFlags
	rf.register(fs)
	var spec admin.ClientSpec
	var jwksFile, after string
	var redirects, logouts, grants, scopes, purposes listFlag
	var limit int
	var version int64
	want := 1
	switch sub {
	case "add":
		want = 0
		fs.StringVar(&spec.ID, "id", "", "client id")
		fs.StringVar(&spec.Name, "name", "", "display name shown to citizens")
		fs.StringVar(&spec.Domain, "domain", "", "registered domain shown to citizens")
		fs.StringVar(&spec.Profile, "profile", "intl", "intl | gm")
		fs.StringVar(&spec.AuthMethod, "auth-method", "private_key_jwt", "private_key_jwt | client_secret_basic")
		fs.StringVar(&jwksFile, "jwks", "", "file with the client's JWK Set (private_key_jwt)")
		fs.Var(&redirects, "redirect-uri", "redirect URI (repeatable)")
		fs.Var(&logouts, "post-logout-uri", "post-logout redirect URI (repeatable)")
		fs.Var(&grants, "grant-type", "grant type (repeatable; default authorization_code)")
		fs.Var(&scopes, "scope", "allowed scope (repeatable)")
		fs.Var(&purposes, "purpose", "allowed purpose (repeatable)")
		fs.StringVar(&spec.Sector, "sector", "", "pairwise subject sector (default: first redirect URI host)")
		fs.StringVar(&spec.BackchannelLogoutURI, "backchannel-logout-uri", "", "OIDC back-channel logout URI")
		fs.StringVar(&spec.WebhookURL, "webhook-url", "", "webhook URL for entitlement events")
		fs.BoolVar(&spec.RequirePAR, "require-par", false, "require pushed authorization requests")
		fs.StringVar(&spec.IDTokenAlg, "id-token-alg", "", "id_token_signed_response_alg: intl ES256 (default) | RS256; gm SM2SM3")
	case "list":
		want = 0
		fs.StringVar(&after, "after", "", "list clients after this id")
		fs.IntVar(&limit, "limit", 100, "page size (1-1000)")
	case "disable":
		fs.Int64Var(&version, "version", 0, "expected client version; 0 acts on the current one")
	case "show":
	default:
		fmt.Fprint(stderr, clientsUsage)
		return fmt.Errorf("unknown subcommand %q", sub)
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != want {
		fmt.Fprint(stderr, clientsUsage)
		return fmt.Errorf("clients %s takes %d argument(s), got %d", sub, want, len(pos))
	}
	if sub == "list" && (limit < 1 || limit > 1000) {
		return errors.New("--limit must be 1-1000")
	}
	if jwksFile != "" {
		b, err := os.ReadFile(jwksFile)
		if err != nil {
			return err
		}
		if !json.Valid(b) {
			return errors.New("--jwks: the file is not JSON")
		}
		spec.JWKS = b
	}
	spec.RedirectURIs, spec.PostLogoutRedirectURIs, spec.GrantTypes, spec.Scopes, spec.Purposes = redirects, logouts, grants, scopes, purposes

	ctx, cancel := context.WithTimeout(context.Background(), rf.timeout)
	defer cancel()
	reg, err := rf.open(ctx, stderr)
	if err != nil {
		return err
	}
	defer reg.store.Close()
	clients, err := admin.NewClients(reg.store, secret.Hasher{Key: reg.secrets.ClientSecretKey}, nil)
	if err != nil {
		return err
	}
	switch sub {
	case "add":
		c, secret, err := clients.Create(ctx, reg.actor, spec)
		if err != nil {
			return describe(err)
		}
		out := admin.ClientToJSON(c)
		out.Secret = secret
		if secret != "" {
			fmt.Fprintln(stderr, "esscctl: the client secret is shown once below; store it now")
		}
		return printJSON(stdout, out)
	case "show":
		c, err := clients.Get(ctx, pos[0])
		if err != nil {
			return describe(err)
		}
		return printJSON(stdout, admin.ClientToJSON(c))
	case "list":
		cls, err := clients.List(ctx, after, limit)
		if err != nil {
			return describe(err)
		}
		for _, c := range cls {
			state := "enabled"
			if c.Disabled {
				state = "disabled"
			}
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\t%s\n", c.ID, c.Profile, c.AuthMethod, state, c.Name)
		}
		return nil
	default: // disable
		c, err := clients.Disable(ctx, reg.actor, pos[0], version)
		if err != nil {
			return describe(err)
		}
		return printJSON(stdout, admin.ClientToJSON(c))
	}
}
