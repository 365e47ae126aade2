package wallet

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/emmansun/gmsm/sm3"

	"github.com/essc-project/essc/signing"
)

// ProofHeader carries the device-key proof of a wallet request.
const ProofHeader = "Essc-Proof"

// ProofType is the JOSE typ of a device-key proof.
const ProofType = "essc-proof+jwt"

// ErrBadProof is returned (wrapped) for a missing, malformed, expired,
// replayed or wrongly signed device-key proof.
var ErrBadProof = errors.New("wallet: invalid device proof")

// ProofClaims are the claims of a device-key proof (DPoP-like, RFC 9449):
// the request's method and URL, a fresh timestamp, a single-use id and the
// SM3 hash of the body, so a captured proof cannot be replayed or moved to
// another request.
type ProofClaims struct {
	HTM string `json:"htm"`
	HTU string `json:"htu"`
	IAT int64  `json:"iat"`
	JTI string `json:"jti"`
	BH  string `json:"bh"` // base64url(SM3(body))
}

// BodyHash is base64url(SM3(body)), the bh claim.
func BodyHash(body []byte) string {
	h := sm3.Sum(body)
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// SignProof makes a device-key proof for one request. With embedJWK the
// public key travels in the header (apply, first PIN change); otherwise the
// kid names the bound device by its key thumbprint.
func SignProof(key *signing.Key, method, url string, body []byte, now time.Time, embedJWK bool) (string, error) {
	return SignProofJTI(key, method, url, body, now, embedJWK, NewJTI())
}

// NewJTI returns a fresh random proof id (128 bits, base64url).
func NewJTI() string {
	var b [16]byte
	if _, err := randRead(b[:]); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// SignProofJTI is SignProof with a chosen jti, for a body that must refer to
// its own proof (liveness evidence bound to the request: /wallet/v1/certify).
func SignProofJTI(key *signing.Key, method, url string, body []byte, now time.Time, embedJWK bool, jti string) (string, error) {
	hdr := map[string]any{"typ": ProofType}
	if embedJWK {
		hdr["jwk"] = key.PublicJWK()
	}
	payload, err := json.Marshal(ProofClaims{HTM: method, HTU: url, IAT: now.Unix(), JTI: jti, BH: BodyHash(body)})
	if err != nil {
		return "", err
	}
	return signing.Sign(key, hdr, payload)
}

// maxProofLen bounds a proof (an SM2 JWK header and claims are ~600 bytes).
const maxProofLen = 4096

// proofHeader is the part of the JOSE header the wallet reads itself.
type proofHeader struct {
	Typ string          `json:"typ"`
	Kid string          `json:"kid"`
	JWK json.RawMessage `json:"jwk"`
}

// peekHeader decodes the JOSE header of a compact JWS without verifying it.
func peekHeader(token string) (proofHeader, error) {
	var h proofHeader
	if len(token) > maxProofLen {
		return h, fmt.Errorf("%w: too long", ErrBadProof)
	}
	first, _, ok := strings.Cut(token, ".")
	if !ok {
		return h, fmt.Errorf("%w: not a compact JWS", ErrBadProof)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(first)
	if err != nil {
		return h, fmt.Errorf("%w: header encoding", ErrBadProof)
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return h, fmt.Errorf("%w: header JSON", ErrBadProof)
	}
	if h.Typ != ProofType {
		return h, fmt.Errorf("%w: typ", ErrBadProof)
	}
	return h, nil
}

// singleKey resolves exactly one SM2 key, whatever the kid.
type singleKey struct{ k *signing.Key }

func (s singleKey) ResolveKey(_, alg string) (*signing.Key, error) {
	if alg != signing.AlgSM2SM3 {
		return nil, signing.ErrAlgMismatch
	}
	return s.k, nil
}

// verifyProof checks signature (with key), typ, htm, htu, iat within skew
// and the body hash. Replay of the jti is checked by the caller's cache.
func verifyProof(token string, key *signing.Key, method, url string, body []byte, now time.Time, skew time.Duration) (ProofClaims, error) {
	hdr, payload, err := signing.Verify(token, singleKey{key})
	if err != nil {
		return ProofClaims{}, fmt.Errorf("%w: %w", ErrBadProof, err)
	}
	if hdr.Alg != signing.AlgSM2SM3 || hdr.Typ != ProofType {
		return ProofClaims{}, fmt.Errorf("%w: alg/typ", ErrBadProof)
	}
	var c ProofClaims
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return ProofClaims{}, fmt.Errorf("%w: claims", ErrBadProof)
	}
	switch {
	case c.HTM != method:
		return c, fmt.Errorf("%w: htm", ErrBadProof)
	case c.HTU != url:
		return c, fmt.Errorf("%w: htu", ErrBadProof)
	case c.IAT == 0 || now.Sub(time.Unix(c.IAT, 0)).Abs() > skew:
		return c, fmt.Errorf("%w: iat outside ±%s", ErrBadProof, skew)
	case len(c.JTI) < 16 || len(c.JTI) > 64:
		return c, fmt.Errorf("%w: jti", ErrBadProof)
	case c.BH != BodyHash(body):
		return c, fmt.Errorf("%w: body hash", ErrBadProof)
	}
	return c, nil
}

// jtiKey is the replay-cache key of a proof: the key thumbprint and jti
// (hashed, so attacker-chosen strings never become store keys verbatim).
func jtiKey(thumb, jti string) string {
	h := sha256.Sum256([]byte(thumb + "\x00" + jti))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// deviceKeys keeps parsed device keys by their stored JWK: a device's key
// never changes (a new key is a new device binding), so each wallet request
// need not parse it again (issue 9: repeated key parsing; two per QR
// login), and the SM2 library's per-key precomputation is kept with the
// key. Whether the device is still bound is read from the registry on every
// request, never from here. Bounded: a full cache starts over.
type deviceKeys struct {
	mu sync.Mutex
	m  map[string]*signing.Key
}

const deviceKeysMax = 4096

func (c *deviceKeys) parse(jwk []byte) (*signing.Key, error) {
	c.mu.Lock()
	k := c.m[string(jwk)]
	c.mu.Unlock()
	if k != nil {
		return k, nil
	}
	k, err := signing.ParseJWK(jwk)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= deviceKeysMax {
		c.m = make(map[string]*signing.Key)
	}
	c.m[string(jwk)] = k
	c.mu.Unlock()
	return k, nil
}
