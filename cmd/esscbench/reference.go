package main

import (
	"crypto/rand"
	"runtime"
	"syscall"
	"time"

	"github.com/emmansun/gmsm/sm2"
)

// Reference is the fixed in-process yardstick every run measures: raw SM2
// sign and verify (SM3, default user id) with github.com/emmansun/gmsm on
// one goroutine locked to its thread. Wall time per operation is the
// yardstick of throughput (a busier machine slows both); thread CPU time per
// operation is the yardstick of server CPU per operation (neither is
// inflated by other processes waiting for the same cores).
type Reference struct {
	SM2SignNS      float64 `json:"sm2_sign_ns"`
	SM2VerifyNS    float64 `json:"sm2_verify_ns"`
	SM2SignCPUNS   float64 `json:"sm2_sign_cpu_ns"`
	SM2VerifyCPUNS float64 `json:"sm2_verify_cpu_ns"`
}

// measureReference times sign and verify for about d each.
func measureReference(d time.Duration) (Reference, error) {
	priv, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return Reference{}, err
	}
	msg := []byte("essc reference benchmark: a token-sized message of some length, signed raw")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var sig []byte
	var ref Reference
	n, t0, c0 := 0, time.Now(), threadCPU()
	for n == 0 || time.Since(t0) < d {
		if sig, err = priv.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts); err != nil {
			return Reference{}, err
		}
		n++
	}
	ref.SM2SignNS = float64(time.Since(t0).Nanoseconds()) / float64(n)
	ref.SM2SignCPUNS = float64(threadCPU()-c0) / float64(n)
	n, t0, c0 = 0, time.Now(), threadCPU()
	for n == 0 || time.Since(t0) < d {
		if !sm2.VerifyASN1WithSM2(&priv.PublicKey, nil, msg, sig) {
			return Reference{}, errReferenceVerify
		}
		n++
	}
	ref.SM2VerifyNS = float64(time.Since(t0).Nanoseconds()) / float64(n)
	ref.SM2VerifyCPUNS = float64(threadCPU()-c0) / float64(n)
	return ref, nil
}

// rusageThread is RUSAGE_THREAD (Linux): the calling thread's usage.
const rusageThread = 1

// threadCPU is the calling OS thread's user+system CPU time in ns (0 where
// unsupported, which leaves the CPU yardstick unmeasured).
func threadCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// mean averages two measurements (taken before and after the load, so the
// yardstick sees the same machine conditions as the run on average).
func (r Reference) mean(o Reference) Reference {
	return Reference{SM2SignNS: (r.SM2SignNS + o.SM2SignNS) / 2, SM2VerifyNS: (r.SM2VerifyNS + o.SM2VerifyNS) / 2,
		SM2SignCPUNS: (r.SM2SignCPUNS + o.SM2SignCPUNS) / 2, SM2VerifyCPUNS: (r.SM2VerifyCPUNS + o.SM2VerifyCPUNS) / 2}
}

type referenceError string

func (e referenceError) Error() string { return string(e) }

const errReferenceVerify = referenceError("esscbench: reference SM2 signature does not verify")

// selfCPU is this process's user+system CPU time (every thread; a spawned
// esscd is a child and not counted); ok is false where unsupported.
func selfCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
