package idp

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/binary"

	"github.com/emmansun/gmsm/sm3"
)

// PairwiseSubject returns the pairwise sub of holderID at sector:
// base64url(HMAC-SM3(key, len(sector) || sector || holderID)). The holder id
// is stable across card replacement, so is the subject. The length prefix
// makes (sector, holder) pairs unambiguous.
func PairwiseSubject(key []byte, sector, holderID string) string {
	m := hmac.New(sm3.New, key)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(sector)))
	m.Write(n[:])
	m.Write([]byte(sector))
	m.Write([]byte(holderID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
