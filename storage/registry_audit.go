package storage

import (
	"crypto/hmac"
	"encoding/binary"
	"fmt"
	"hash"

	"github.com/emmansun/gmsm/sm3"
)

// AuditChain computes the chain value of e: HMAC-SM3(key, prev ‖ canonical(e)),
// where canonical(e) is Seq (8 octets big-endian), At in Unix microseconds (8
// octets), then Actor, Act, Action, Target and Details each as an 8-octet length
// followed by the bytes. Prev and Chain of e are ignored. Because Seq is part of
// the MAC, moving, deleting or inserting an entry breaks the chain at that point.
func AuditChain(key, prev []byte, e AuditEntry) []byte {
	m := hmac.New(sm3.New, key)
	writeField(m, prev)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(e.Seq))
	m.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(e.At.UTC().UnixMicro()))
	m.Write(n[:])
	writeField(m, []byte(e.Actor))
	writeField(m, []byte(e.Act))
	writeField(m, []byte(e.Action))
	writeField(m, []byte(e.Target))
	writeField(m, e.Details)
	return m.Sum(nil)
}

func writeField(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// AuditVerifier checks a chain incrementally, entry by entry in Seq order, so a
// store can stream a log of any length. The zero value is not usable: create it
// with NewAuditVerifier.
type AuditVerifier struct {
	key     []byte
	prev    []byte
	lastSeq int64
	n       int64
	bad     *AuditReport
}

// NewAuditVerifier starts verification of a log from its first entry.
func NewAuditVerifier(key []byte) *AuditVerifier {
	return &AuditVerifier{key: key}
}

// Add checks the next entry. It returns false once the chain is broken (later
// entries are then ignored; Report names the first bad one).
func (v *AuditVerifier) Add(e AuditEntry) bool {
	if v.bad != nil {
		return false
	}
	v.n++
	switch {
	case e.Seq != v.lastSeq+1:
		v.fail(e.Seq, fmt.Sprintf("sequence gap or reorder: expected %d, found %d", v.lastSeq+1, e.Seq))
	case !hmac.Equal(e.Prev, v.prev):
		v.fail(e.Seq, "previous-chain mismatch")
	case !hmac.Equal(e.Chain, AuditChain(v.key, v.prev, e)):
		v.fail(e.Seq, "chain mismatch (entry modified)")
	default:
		v.prev = e.Chain
		v.lastSeq = e.Seq
		return true
	}
	return false
}

// Last returns the Seq and Chain of the last entry verified so far (0, nil
// before any). Stores use it when entries may be appended during verification.
func (v *AuditVerifier) Last() (int64, []byte) { return v.lastSeq, v.prev }

// Broken reports whether a bad entry was found.
func (v *AuditVerifier) Broken() bool { return v.bad != nil }

// Finish compares the last verified entry with the separately stored head
// (the last Seq and Chain the store recorded), which detects a deleted tail.
// Pass headSeq 0 and a nil headChain for an empty log.
func (v *AuditVerifier) Finish(headSeq int64, headChain []byte) AuditReport {
	if v.bad != nil {
		return *v.bad
	}
	if headSeq != v.lastSeq || !hmac.Equal(headChain, v.prev) {
		return AuditReport{Entries: v.n, FirstBad: v.lastSeq + 1,
			Reason: fmt.Sprintf("head mismatch: head is seq %d, log ends at %d (tail deleted or head altered)", headSeq, v.lastSeq)}
	}
	return AuditReport{OK: true, Entries: v.n}
}

func (v *AuditVerifier) fail(seq int64, reason string) {
	v.bad = &AuditReport{Entries: v.n, FirstBad: seq, Reason: reason}
}
