package storage

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	json "github.com/goccy/go-json"
	"github.com/ory/fosite"
	"golang.org/x/text/language"
)

// RequestCodec turns fosite requests into bytes and back (build it with
// NewRequestCodec; it is safe for concurrent use). fosite.Request holds
// a Client interface and a Session interface and cannot be unmarshalled on
// its own: the codec stores the client id and the session JSON and rebuilds
// them with Lookup and NewSession. Numbers in the session are decoded with
// json.Number (UseNumber), so integer claims stay integers (no float64
// rounding of e.g. 1700000000123). Both backends store exactly these bytes,
// so they behave identically.
//
// The JSON is written and read with github.com/goccy/go-json: these are
// records essc wrote itself, read on every step of a login, and go-json
// decodes one in about half encoding/json's time (10–14 µs against 21–24
// µs in alternating runs of BenchmarkRequestCodec, docs/PERFORMANCE.md).
// Input from the network stays with encoding/json.
//
// Format: '{' starts plain JSON; 'z' starts raw-DEFLATE-compressed JSON
// (used when it is smaller, i.e. almost always: a stored authorize request
// shrinks by about half, which keeps a QR transaction under 1 KiB in Redis).
// Decode reads both, whatever Plain says.
type RequestCodec struct {
	Lookup     LookupClient
	NewSession NewSessionFunc
	// Plain stores plain JSON: for the in-memory store, where compression
	// saves no network or Redis memory and cost about 34 µs per stored
	// request — more than an SM2 signature (docs/PERFORMANCE.md).
	Plain bool

	writers sync.Pool // *flate.Writer
	readers sync.Pool // io.ReadCloser implementing flate.Resetter
	lang    atomic.Pointer[langTag]
}

// langTag is the last language Decode parsed: a deployment's requests carry
// one or two (zh-CN), and language.Parse cost a sixth of a decode.
type langTag struct {
	s   string
	tag language.Tag
}

// parseLang parses a stored language tag (language.Und when invalid).
func (c *RequestCodec) parseLang(s string) language.Tag {
	if l := c.lang.Load(); l != nil && l.s == s {
		return l.tag
	}
	tag, err := language.Parse(s)
	if err != nil {
		return language.Und
	}
	c.lang.Store(&langTag{s, tag})
	return tag
}

// NewRequestCodec returns a codec; lookup and newSession are needed only by
// Decode.
func NewRequestCodec(lookup LookupClient, newSession NewSessionFunc) *RequestCodec {
	return &RequestCodec{Lookup: lookup, NewSession: newSession}
}

// maxDecoded bounds decompression (a stored request is a few KiB; this
// stops a corrupted or hostile record from inflating without limit).
const maxDecoded = 1 << 20

// requestRecord is the stored form of a fosite.Requester (and, when
// Authorize is set, of a fosite.AuthorizeRequester). The session is
// marshalled in place; Decode reads it into NewSession's value.
type requestRecord struct {
	recordHead
	Session   fosite.Session `json:"sess,omitempty"`
	Authorize *authorizePart `json:"az,omitempty"`
}

type recordHead struct {
	ID                string     `json:"id"`
	RequestedAt       time.Time  `json:"rat"`
	ClientID          string     `json:"cid"`
	Scopes            []string   `json:"scp,omitempty"`
	GrantedScopes     []string   `json:"gsc,omitempty"`
	Form              url.Values `json:"form,omitempty"`
	RequestedAudience []string   `json:"aud,omitempty"`
	GrantedAudience   []string   `json:"gaud,omitempty"`
	Lang              string     `json:"lang,omitempty"`
}

type authorizePart struct {
	ResponseTypes        []string `json:"rt,omitempty"`
	RedirectURI          string   `json:"ru,omitempty"`
	State                string   `json:"st,omitempty"`
	HandledResponseTypes []string `json:"hrt,omitempty"`
	ResponseMode         string   `json:"rm,omitempty"`
	DefaultResponseMode  string   `json:"drm,omitempty"`
}

// Encode serialises r. ErrInvalidArgument if r or its client is nil.
func (c *RequestCodec) Encode(r fosite.Requester) ([]byte, error) {
	return c.encode(r, true)
}

// EncodeWithoutSession serialises r without its session: Decode rebuilds it
// with an empty NewSession value. For the PKCE and OIDC records of a code
// (FositeStore), which keep only the authorize request's form and client.
func (c *RequestCodec) EncodeWithoutSession(r fosite.Requester) ([]byte, error) {
	return c.encode(r, false)
}

func (c *RequestCodec) encode(r fosite.Requester, withSession bool) ([]byte, error) {
	if r == nil || r.GetClient() == nil {
		return nil, fmt.Errorf("%w: nil request or client", ErrInvalidArgument)
	}
	rec := requestRecord{recordHead: recordHead{
		ID:                r.GetID(),
		RequestedAt:       r.GetRequestedAt().UTC(),
		ClientID:          r.GetClient().GetID(),
		Scopes:            r.GetRequestedScopes(),
		GrantedScopes:     r.GetGrantedScopes(),
		Form:              r.GetRequestForm(),
		RequestedAudience: r.GetRequestedAudience(),
		GrantedAudience:   r.GetGrantedAudience(),
	}}
	if withSession {
		rec.Session = r.GetSession()
	}
	if l, ok := r.(interface{ GetLang() language.Tag }); ok && l.GetLang() != language.Und {
		rec.Lang = l.GetLang().String()
	}
	if ar, ok := r.(fosite.AuthorizeRequester); ok {
		p := &authorizePart{
			ResponseTypes:        ar.GetResponseTypes(),
			State:                ar.GetState(),
			HandledResponseTypes: handled(ar),
			ResponseMode:         string(ar.GetResponseMode()),
			DefaultResponseMode:  string(ar.GetDefaultResponseMode()),
		}
		if u := ar.GetRedirectURI(); u != nil {
			p.RedirectURI = u.String()
		}
		rec.Authorize = p
	}
	plain, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("storage: encode request: %w", err)
	}
	if c.Plain {
		return plain, nil
	}
	return c.compress(plain), nil
}

func (c *RequestCodec) compress(plain []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(plain)/2 + 16)
	buf.WriteByte('z')
	w, _ := c.writers.Get().(*flate.Writer)
	if w == nil {
		w, _ = flate.NewWriter(&buf, flate.BestSpeed)
	} else {
		w.Reset(&buf)
	}
	_, werr := w.Write(plain)
	cerr := w.Close()
	c.writers.Put(w)
	if werr != nil || cerr != nil || buf.Len() >= len(plain) {
		return plain
	}
	return buf.Bytes()
}

func (c *RequestCodec) decompress(data []byte) ([]byte, error) {
	if len(data) == 0 || data[0] != 'z' {
		return data, nil
	}
	src := bytes.NewReader(data[1:])
	r, _ := c.readers.Get().(io.ReadCloser)
	if r == nil {
		r = flate.NewReader(src)
	} else if err := r.(flate.Resetter).Reset(src, nil); err != nil {
		return nil, err
	}
	defer c.readers.Put(r)
	out, err := io.ReadAll(io.LimitReader(r, maxDecoded+1))
	if err != nil {
		return nil, err
	}
	if len(out) > maxDecoded {
		return nil, errors.New("record too large")
	}
	return out, nil
}

func handled(ar fosite.AuthorizeRequester) []string {
	var out []string
	for _, rt := range ar.GetResponseTypes() {
		if ar.DidHandleAllResponseTypes() || isHandled(ar, rt) {
			out = append(out, rt)
		}
	}
	return out
}

func isHandled(ar fosite.AuthorizeRequester, rt string) bool {
	if a, ok := ar.(*fosite.AuthorizeRequest); ok {
		return a.HandledResponseTypes.Has(rt)
	}
	return false
}

// Decode rebuilds a request encoded by Encode: a *fosite.AuthorizeRequest if
// it was an authorize request, else a *fosite.Request. The client comes from
// Lookup (its errors are returned wrapped: ErrNotFound for a deleted client,
// ErrUnavailable for an outage); the session from NewSession.
func (c *RequestCodec) Decode(ctx context.Context, data []byte) (fosite.Requester, error) {
	plain, err := c.decompress(data)
	if err != nil {
		return nil, fmt.Errorf("storage: decode request: %w", err)
	}
	if c.Lookup == nil || c.NewSession == nil {
		return nil, fmt.Errorf("%w: codec needs Lookup and NewSession", ErrInvalidArgument)
	}
	// The session is kept raw and decoded into NewSession's value after the
	// record (go-json, unlike encoding/json, does not decode into a pointer
	// held by an interface field).
	sess := c.NewSession()
	var rec struct {
		recordHead
		Session   json.RawMessage `json:"sess,omitempty"`
		Authorize *authorizePart  `json:"az,omitempty"`
	}
	// The record's own fields have no numbers to keep (Unmarshal, which
	// also refuses data after the record); the session's claims do (a
	// Decoder with UseNumber).
	if err := json.Unmarshal(plain, &rec); err != nil {
		return nil, fmt.Errorf("storage: decode request: %w", err)
	}
	if len(rec.Session) > 0 {
		sd := json.NewDecoder(bytes.NewReader(rec.Session))
		sd.UseNumber()
		if err := sd.Decode(sess); err != nil {
			return nil, fmt.Errorf("storage: decode request session: %w", err)
		}
	}
	cl, err := c.Lookup(ctx, rec.ClientID)
	if err != nil {
		return nil, fmt.Errorf("storage: client %q of stored request: %w", rec.ClientID, err)
	}
	req := fosite.Request{
		ID:                rec.ID,
		RequestedAt:       rec.RequestedAt,
		Client:            cl,
		RequestedScope:    fosite.Arguments(nonNil(rec.Scopes)),
		GrantedScope:      fosite.Arguments(nonNil(rec.GrantedScopes)),
		Form:              rec.Form,
		Session:           sess,
		RequestedAudience: fosite.Arguments(nonNil(rec.RequestedAudience)),
		GrantedAudience:   fosite.Arguments(nonNil(rec.GrantedAudience)),
	}
	if req.Form == nil {
		req.Form = url.Values{}
	}
	if rec.Lang != "" {
		req.Lang = c.parseLang(rec.Lang)
	}
	if rec.Authorize == nil {
		return &req, nil
	}
	ar := &fosite.AuthorizeRequest{
		ResponseTypes:        fosite.Arguments(nonNil(rec.Authorize.ResponseTypes)),
		State:                rec.Authorize.State,
		HandledResponseTypes: fosite.Arguments(nonNil(rec.Authorize.HandledResponseTypes)),
		ResponseMode:         fosite.ResponseModeType(rec.Authorize.ResponseMode),
		DefaultResponseMode:  fosite.ResponseModeType(rec.Authorize.DefaultResponseMode),
		Request:              req,
	}
	if rec.Authorize.RedirectURI != "" {
		u, err := url.Parse(rec.Authorize.RedirectURI)
		if err != nil {
			return nil, fmt.Errorf("storage: decode redirect uri: %w", err)
		}
		ar.RedirectURI = u
	}
	return ar, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// HashKey returns the storage key for a secret-bearing value (code or token
// signature, request URI, jti, session id): base64url(SHA-256(kind 0x00
// value)). Backends never use raw values as keys.
func HashKey(kind, value string) string {
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(value))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}
