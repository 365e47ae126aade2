package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ErrNotLoopback is returned for a target that is not on a loopback address.
var ErrNotLoopback = errors.New("esscbench: target is not a loopback address")

// CheckLoopback accepts only http URLs whose host is a loopback IP literal
// (127.0.0.0/8, ::1) or "localhost", with no user info, query or fragment.
// Host names other than localhost are refused without resolving them: a
// name could resolve elsewhere between the check and the run.
func CheckLoopback(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("esscbench: target %q: %w", raw, err)
	}
	if u.Scheme != "http" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("esscbench: target %q must be http://HOST:PORT with nothing else", raw)
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return &url.URL{Scheme: "http", Host: u.Host}, nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%w: %q", ErrNotLoopback, host)
	}
	return &url.URL{Scheme: "http", Host: u.Host}, nil
}

// CheckLoopbackAddr is CheckLoopback for a host:port (e.g. --redis-addr).
func CheckLoopbackAddr(addr string) error {
	_, err := CheckLoopback("http://" + addr)
	return err
}
