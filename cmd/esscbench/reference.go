package main

import (
	"crypto/rand"
	"time"

	"github.com/emmansun/gmsm/sm2"
)

// Reference is the fixed in-process yardstick every run measures: raw SM2
// sign and verify (SM3, default user id) with github.com/emmansun/gmsm on
// one goroutine. Scenario ratios divide by it, so a slower or busier machine
// moves both sides together.
type Reference struct {
	SM2SignNS   float64 `json:"sm2_sign_ns"`
	SM2VerifyNS float64 `json:"sm2_verify_ns"`
}

// measureReference times sign and verify for about d each.
func measureReference(d time.Duration) (Reference, error) {
	priv, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return Reference{}, err
	}
	msg := []byte("essc reference benchmark: a token-sized message of some length, signed raw")
	var sig []byte
	n, t0 := 0, time.Now()
	for n == 0 || time.Since(t0) < d {
		if sig, err = priv.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts); err != nil {
			return Reference{}, err
		}
		n++
	}
	sign := float64(time.Since(t0).Nanoseconds()) / float64(n)
	n, t0 = 0, time.Now()
	for n == 0 || time.Since(t0) < d {
		if !sm2.VerifyASN1WithSM2(&priv.PublicKey, nil, msg, sig) {
			return Reference{}, errReferenceVerify
		}
		n++
	}
	return Reference{SM2SignNS: sign, SM2VerifyNS: float64(time.Since(t0).Nanoseconds()) / float64(n)}, nil
}

// mean averages two measurements (taken before and after the load, so the
// yardstick sees the same machine conditions as the run on average).
func (r Reference) mean(o Reference) Reference {
	return Reference{SM2SignNS: (r.SM2SignNS + o.SM2SignNS) / 2, SM2VerifyNS: (r.SM2VerifyNS + o.SM2VerifyNS) / 2}
}

type referenceError string

func (e referenceError) Error() string { return string(e) }

const errReferenceVerify = referenceError("esscbench: reference SM2 signature does not verify")
