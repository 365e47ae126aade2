package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// kindError is an operation failure with the kind it is counted under
// (e.g. "http_503", "oauth_invalid_grant", "transport", "bad_response").
type kindError struct {
	kind string
	msg  string
}

func (e *kindError) Error() string { return e.kind + ": " + e.msg }

func failf(kind, format string, a ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, a...)}
}

// errKind classifies err for the report's error counts.
func errKind(err error) string {
	var ke *kindError
	var ne net.Error
	switch {
	case errors.As(err, &ke):
		return ke.kind
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &ne), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "transport"
	default:
		return "other"
	}
}

// newTransport is the shared keep-alive transport: one idle connection per
// worker (and then some for the QR scenario's two parties).
func newTransport(workers int, timeout time.Duration) *syncTransport {
	return newSyncTransport(4*workers+16, timeout)
}

// doJSON sends req and decodes a JSON answer into out (when non-nil). A
// status other than want is an error of kind http_<status>, or
// oauth_<error> when the body is an OAuth error object.
func doJSON(c *http.Client, req *http.Request, want int, out any) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		var oe struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		if json.Unmarshal(body, &oe) == nil {
			if oe.Error != "" && len(oe.Error) < 64 {
				return failf("oauth_"+oe.Error, "%s %s: %d", req.Method, req.URL.Path, resp.StatusCode)
			}
			if oe.Code != "" && len(oe.Code) < 64 {
				return failf("api_"+oe.Code, "%s %s: %d", req.Method, req.URL.Path, resp.StatusCode)
			}
		}
		return failf(fmt.Sprintf("http_%d", resp.StatusCode), "%s %s", req.Method, req.URL.Path)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return failf("bad_response", "%s %s: %v", req.Method, req.URL.Path, err)
		}
	}
	return nil
}

// postForm posts an application/x-www-form-urlencoded body, optionally with
// HTTP Basic client authentication (RFC 6749 §2.3.1 form-encodes both parts).
func postForm(ctx context.Context, c *http.Client, u string, form url.Values, basicID, basicSecret string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicID != "" {
		req.SetBasicAuth(url.QueryEscape(basicID), url.QueryEscape(basicSecret))
	}
	return doJSON(c, req, http.StatusOK, out)
}

// apiJSON sends a JSON body with a bearer token.
func apiJSON(ctx context.Context, c *http.Client, method, u, bearer string, in any, want int, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return doJSON(c, req, want, out)
}
