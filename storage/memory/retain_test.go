package memory

import (
	"context"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
)

// TestPutCopiesRetainedStrings: the request id and subject a token is
// indexed under are copies, not views of the caller's strings. A request
// decoded from a stored record (the code's, at the token endpoint) holds
// strings inside the decoder's buffer of the whole record; an index key
// sharing it kept ~3 KB per login alive for the token's lifetime (24 % of
// the embedded server's live heap after 40,000 logins).
func TestPutCopiesRetainedStrings(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newSweepStore(t, func() time.Time { return now })
	record := strings.Repeat("x", 4096) + "req-1" + "holder-1" // one buffer, as a decoder leaves it
	id, subject := record[4096:4101], record[4101:]
	sess := openid.NewDefaultSession()
	sess.Subject = subject
	sess.SetExpiresAt(fosite.AccessToken, now.Add(time.Hour))
	r := &fosite.Request{ID: id, Client: &fosite.DefaultClient{ID: "c"}, Session: sess}
	if err := s.CreateAccessTokenSession(context.Background(), "at", r); err != nil {
		t.Fatal(err)
	}
	inRecord := func(v string) bool {
		p, lo := uintptr(unsafe.Pointer(unsafe.StringData(v))), uintptr(unsafe.Pointer(unsafe.StringData(record)))
		return p >= lo && p < lo+uintptr(len(record))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var kept []string
	for _, it := range s.items {
		kept = append(kept, it.reqID)
	}
	for k, m := range s.reqIdx {
		kept = append(kept, k)
		for k2 := range m {
			kept = append(kept, k2)
		}
	}
	for k, m := range s.subjIdx {
		kept = append(kept, k)
		for rid, e := range m {
			kept = append(kept, rid, e.tag)
		}
	}
	for _, refs := range s.expiries.due {
		for _, ref := range refs {
			kept = append(kept, ref.key, ref.sub)
		}
	}
	if len(kept) < 6 {
		t.Fatalf("only %d strings kept: %q", len(kept), kept)
	}
	for _, v := range kept {
		if v != "" && inRecord(v) {
			t.Errorf("the store keeps %q inside the caller's buffer", v)
		}
	}
}
