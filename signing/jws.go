package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// MaxTokenSize bounds the compact JWS accepted by Verify.
const MaxTokenSize = 64 << 10

// KeyResolver finds the verification key for a JWS header. Implementations
// return an error wrapping ErrUnknownKey when kid is not (or no longer, or not
// yet) valid, and ErrAlgMismatch when kid names a key of another algorithm.
// A kid resolves to exactly one algorithm.
type KeyResolver interface {
	ResolveKey(kid, alg string) (*Key, error)
}

// Header is the verified protected header of a JWS. Raw holds the whole
// decoded header JSON for members not listed here.
type Header struct {
	Alg string
	Kid string
	Typ string
	Cty string
	Raw json.RawMessage
}

// Sign produces a compact JWS (RFC 7515 §7.1) of payload with key. The
// protected header carries "alg" and "kid" from key, plus the members of
// header (e.g. "typ"); header must not set "alg", "kid" or "crit".
func Sign(key *Key, header map[string]any, payload []byte) (string, error) {
	if key == nil || key.signer == nil {
		return "", fmt.Errorf("sign: key has no private half: %w", ErrInvalidKey)
	}
	var hdr []byte
	typ, onlyTyp := header["typ"].(string)
	switch {
	case len(header) == 0:
		hdr = fastHeader(key, "")
	case len(header) == 1 && onlyTyp:
		hdr = fastHeader(key, typ)
	default:
		h := make(map[string]any, len(header)+2)
		for name, v := range header {
			switch name {
			case "alg", "kid", "crit":
				return "", fmt.Errorf("sign: header member %q is set by the key: %w", name, ErrMalformed)
			}
			h[name] = v
		}
		h["alg"], h["kid"] = key.alg, key.id
		var err error
		if hdr, err = json.Marshal(h); err != nil {
			return "", fmt.Errorf("sign: header: %v: %w", err, ErrMalformed)
		}
	}
	return signCompact(key, hdr, payload)
}

// SignClaims marshals claims as JSON and signs them with typ as the "typ"
// header ("JWT", "at+jwt", "logout+jwt", ...; empty for none).
func SignClaims(key *Key, typ string, claims any) (string, error) {
	if key == nil || key.signer == nil {
		return "", fmt.Errorf("sign: key has no private half: %w", ErrInvalidKey)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("sign: claims: %v: %w", err, ErrMalformed)
	}
	return signCompact(key, fastHeader(key, typ), payload)
}

// fastHeader renders {"alg":..,"kid":..[,"typ":..]} as json.Marshal of a map would.
func fastHeader(key *Key, typ string) []byte {
	q := func(s string) []byte { b, _ := json.Marshal(s); return b }
	b := make([]byte, 0, 64+len(key.id)+len(typ))
	b = append(b, `{"alg":`...)
	b = append(b, q(key.alg)...)
	b = append(b, `,"kid":`...)
	b = append(b, q(key.id)...)
	if typ != "" {
		b = append(b, `,"typ":`...)
		b = append(b, q(typ)...)
	}
	return append(b, '}')
}

func signCompact(key *Key, hdr, payload []byte) (string, error) {
	hl, pl := b64.EncodedLen(len(hdr)), b64.EncodedLen(len(payload))
	sigLen := 64
	if key.rsa != nil {
		sigLen = key.rsa.Size()
	}
	buf := make([]byte, hl+1+pl, hl+1+pl+1+b64.EncodedLen(sigLen))
	b64.Encode(buf, hdr)
	buf[hl] = '.'
	b64.Encode(buf[hl+1:], payload)
	sig, err := key.signRaw(buf)
	if err != nil {
		return "", err
	}
	n := len(buf)
	buf = append(buf, '.')
	buf = buf[:n+1+b64.EncodedLen(len(sig))]
	b64.Encode(buf[n+1:], sig)
	return string(buf), nil
}

// signRaw returns the JOSE signature of msg: R‖S (SM2SM3, ES256) or PKCS #1 v1.5 (RS256).
func (k *Key) signRaw(msg []byte) ([]byte, error) {
	if k.signer == nil {
		return nil, fmt.Errorf("sign: key has no private half: %w", ErrInvalidKey)
	}
	switch k.alg {
	case AlgSM2SM3:
		var der []byte
		var err error
		if priv, ok := k.signer.(*sm2.PrivateKey); ok {
			der, err = sm2.SignASN1(rand.Reader, priv, k.sm2Digest(msg), nil)
		} else { // another backend hashes Z_A‖M itself (NewKey's contract)
			der, err = k.signer.Sign(rand.Reader, msg, sm2Opts)
		}
		if err != nil {
			return nil, fmt.Errorf("sign SM2SM3: %w", err)
		}
		return derToRS(der)
	case AlgES256:
		d := sha256.Sum256(msg)
		der, err := k.signer.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("sign ES256: %w", err)
		}
		return derToRS(der)
	case AlgRS256:
		d := sha256.Sum256(msg)
		sig, err := k.signer.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("sign RS256: %w", err)
		}
		return sig, nil
	}
	return nil, fmt.Errorf("sign %q: %w", k.alg, ErrUnsupportedAlg)
}

// sm2Digest is e = SM3(Z_A‖msg), what an SM2 signature signs.
func (k *Key) sm2Digest(msg []byte) []byte {
	h := sm3.New()
	h.Write(k.za)
	h.Write(msg)
	return h.Sum(nil)
}

// verifyRaw checks a JOSE signature of msg strictly: R‖S exactly 64 octets
// with r, s in [1, n-1]; RSA signatures exactly the modulus length.
func (k *Key) verifyRaw(msg, sig []byte) error {
	switch k.alg {
	case AlgSM2SM3, AlgES256:
		if len(sig) != 64 {
			return fmt.Errorf("%s signature of %d octets, want 64: %w", k.alg, len(sig), ErrInvalidSignature)
		}
		n := k.ec.Curve.Params().N
		var r, s big.Int
		r.SetBytes(sig[:32])
		s.SetBytes(sig[32:])
		if r.Sign() == 0 || s.Sign() == 0 || r.Cmp(n) >= 0 || s.Cmp(n) >= 0 {
			return fmt.Errorf("%s signature scalar out of range: %w", k.alg, ErrInvalidSignature)
		}
		der := rsToDER(sig[:32], sig[32:])
		var ok bool
		if k.alg == AlgSM2SM3 {
			ok = sm2.VerifyASN1(k.ec, k.sm2Digest(msg), der)
		} else {
			d := sha256.Sum256(msg)
			ok = ecdsa.VerifyASN1(k.ec, d[:], der)
		}
		if !ok {
			return fmt.Errorf("%s: %w", k.alg, ErrInvalidSignature)
		}
		return nil
	case AlgRS256:
		if len(sig) != k.rsa.Size() {
			return fmt.Errorf("RS256 signature of %d octets, want %d: %w", len(sig), k.rsa.Size(), ErrInvalidSignature)
		}
		d := sha256.Sum256(msg)
		if err := rsa.VerifyPKCS1v15(k.rsa, crypto.SHA256, d[:], sig); err != nil {
			return fmt.Errorf("RS256: %w", ErrInvalidSignature)
		}
		return nil
	}
	return fmt.Errorf("verify %q: %w", k.alg, ErrUnsupportedAlg)
}

// Verify checks a compact JWS strictly and returns its protected header and
// payload. It rejects: anything but three base64url (unpadded, canonical)
// parts, a header that is not one JSON object with unique members, "alg"
// none or not one of ours, "crit" or "b64", a kid that keys does not resolve,
// a key bound to another algorithm, and any signature that is not exactly
// valid (see verifyRaw). Errors wrap the package sentinels.
func Verify(token string, keys KeyResolver) (Header, []byte, error) {
	var h Header
	if len(token) > MaxTokenSize {
		return h, nil, fmt.Errorf("jws: %d octets: %w", len(token), ErrMalformed)
	}
	d1 := strings.IndexByte(token, '.')
	if d1 < 0 {
		return h, nil, fmt.Errorf("jws: not compact serialization: %w", ErrMalformed)
	}
	d2 := strings.IndexByte(token[d1+1:], '.')
	if d2 < 0 {
		return h, nil, fmt.Errorf("jws: not compact serialization: %w", ErrMalformed)
	}
	d2 += d1 + 1
	if strings.IndexByte(token[d2+1:], '.') >= 0 {
		return h, nil, fmt.Errorf("jws: too many parts (JWE?): %w", ErrMalformed)
	}
	if d1 == 0 || d2 == len(token)-1 {
		return h, nil, fmt.Errorf("jws: empty header or signature: %w", ErrMalformed)
	}
	hdr, err := b64.DecodeString(token[:d1])
	if err != nil {
		return h, nil, fmt.Errorf("jws: header encoding: %w", ErrMalformed)
	}
	if err := parseHeader(hdr, &h); err != nil {
		return h, nil, err
	}
	payload, err := b64.DecodeString(token[d1+1 : d2])
	if err != nil {
		return h, nil, fmt.Errorf("jws: payload encoding: %w", ErrMalformed)
	}
	sig, err := b64.DecodeString(token[d2+1:])
	if err != nil {
		return h, nil, fmt.Errorf("jws: signature encoding: %w", ErrMalformed)
	}
	if keys == nil {
		return h, nil, fmt.Errorf("jws: no key resolver: %w", ErrUnknownKey)
	}
	key, err := keys.ResolveKey(h.Kid, h.Alg)
	if err != nil {
		return h, nil, fmt.Errorf("jws: kid %q: %w", h.Kid, err)
	}
	if key == nil {
		return h, nil, fmt.Errorf("jws: kid %q: %w", h.Kid, ErrUnknownKey)
	}
	if key.alg != h.Alg {
		return h, nil, fmt.Errorf("jws: kid %q is %s, header says %s: %w", h.Kid, key.alg, h.Alg, ErrAlgMismatch)
	}
	if err := key.verifyRaw([]byte(token[:d2]), sig); err != nil {
		return h, nil, err
	}
	return h, payload, nil
}

// parseHeader decodes and checks a protected header.
func parseHeader(raw []byte, h *Header) error {
	m, err := parseObject(raw)
	if err != nil {
		return fmt.Errorf("jws header: %w", err)
	}
	alg, ok, err := stringMember(m, "alg")
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("jws header: no alg: %w", ErrMalformed)
	}
	if !SupportedAlg(alg) {
		return fmt.Errorf("jws header: alg %q: %w", alg, ErrUnsupportedAlg)
	}
	if _, crit := m["crit"]; crit {
		return fmt.Errorf("jws header: crit extensions are not supported: %w", ErrMalformed)
	}
	if _, b := m["b64"]; b {
		return fmt.Errorf("jws header: b64 (RFC 7797) is not supported: %w", ErrMalformed)
	}
	h.Alg = alg
	if h.Kid, _, err = stringMember(m, "kid"); err != nil {
		return err
	}
	if h.Typ, _, err = stringMember(m, "typ"); err != nil {
		return err
	}
	if h.Cty, _, err = stringMember(m, "cty"); err != nil {
		return err
	}
	h.Raw = raw
	return nil
}

// derToRS converts an ASN.1 DER ECDSA/SM2 signature to 64-octet R‖S.
func derToRS(der []byte) ([]byte, error) {
	var (
		inner cryptobyte.String
		r, s  []byte
	)
	in := cryptobyte.String(der)
	if !in.ReadASN1(&inner, asn1.SEQUENCE) || !in.Empty() ||
		!inner.ReadASN1Integer(&r) || !inner.ReadASN1Integer(&s) || !inner.Empty() {
		return nil, fmt.Errorf("signer returned a malformed signature: %w", ErrInvalidSignature)
	}
	r, s = trimZero(r), trimZero(s)
	if len(r) > 32 || len(s) > 32 {
		return nil, fmt.Errorf("signer returned an oversized signature: %w", ErrInvalidSignature)
	}
	out := make([]byte, 64)
	copy(out[32-len(r):32], r)
	copy(out[64-len(s):], s)
	return out, nil
}

func trimZero(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// rsToDER encodes big-endian r and s (non-zero) as an ASN.1 DER SEQUENCE.
func rsToDER(r, s []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, v := range [][]byte{trimZero(r), trimZero(s)} {
			b.AddASN1(asn1.INTEGER, func(b *cryptobyte.Builder) {
				if v[0]&0x80 != 0 {
					b.AddUint8(0)
				}
				b.AddBytes(v)
			})
		}
	})
	return b.BytesOrPanic()
}
