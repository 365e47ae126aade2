package wallet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/essc-project/essc/signing"
)

// DevLiveness is the DEVELOPMENT liveness verifier: it accepts evidence that
// is a JWS (typ essc-liveness+jwt) signed by a configured test key, naming
// the e-card (sub), the challenge (the QR transaction), result "live" and a
// fresh iat. It proves nothing about a face. The server refuses to start in
// production mode with it, and it must be enabled explicitly.
type DevLiveness struct {
	Key *signing.Key // the test key's public half
	Now func() time.Time
}

// LivenessClaims are the claims of development liveness evidence.
type LivenessClaims struct {
	Sub       string `json:"sub"`
	Challenge string `json:"challenge"`
	Result    string `json:"result"`
	IAT       int64  `json:"iat"`
}

// VerifyLiveness implements LivenessVerifier.
func (d DevLiveness) VerifyLiveness(_ context.Context, ecardID, challenge, evidence string) error {
	if d.Key == nil {
		return errors.New("wallet: development liveness verifier has no key")
	}
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	hdr, payload, err := signing.Verify(evidence, signing.Keys{d.Key})
	if err != nil {
		return err
	}
	if hdr.Typ != "essc-liveness+jwt" {
		return errors.New("wallet: liveness evidence typ")
	}
	var c LivenessClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return fmt.Errorf("wallet: liveness claims: %w", err)
	}
	switch {
	case c.Sub != ecardID:
		return errors.New("wallet: liveness evidence for another holder")
	case c.Challenge != challenge:
		return errors.New("wallet: liveness evidence for another challenge")
	case c.Result != "live":
		return errors.New("wallet: liveness result not live")
	case now().Sub(time.Unix(c.IAT, 0)).Abs() > 2*time.Minute:
		return errors.New("wallet: liveness evidence expired")
	}
	return nil
}

// SignDevLiveness makes development evidence with the test key (tests, the
// ecard CLI's --dev-face).
func SignDevLiveness(key *signing.Key, ecardID, challenge string, now time.Time) (string, error) {
	return signing.SignClaims(key, "essc-liveness+jwt", LivenessClaims{Sub: ecardID, Challenge: challenge, Result: "live", IAT: now.Unix()})
}
