package secret

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestHashEqual(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	plain, h, err := Generate(key)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 32 {
		t.Fatalf("hash length %d, want 32 (SM3)", len(h))
	}
	tests := []struct {
		name   string
		key    []byte
		secret string
		want   []byte
		ok     bool
	}{
		{"ok/same", key, plain, h, true},
		{"fail/other secret", key, plain + "x", h, false},
		{"fail/other key", bytes.Repeat([]byte{8}, 32), plain, h, false},
		{"fail/empty hash", key, plain, nil, false},
		{"fail/short key", key[:31], plain, h, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Equal(tt.key, tt.secret, tt.want); got != tt.ok {
				t.Fatalf("Equal = %v, want %v", got, tt.ok)
			}
		})
	}
	if _, err := Hash(key[:8], "x"); !errors.Is(err, ErrShortKey) {
		t.Fatalf("short key: %v", err)
	}
}

func TestHasherMatchesEqual(t *testing.T) {
	key := bytes.Repeat([]byte{9}, 32)
	h, err := Hasher{Key: key}.Hash(context.Background(), []byte("the-secret"))
	if err != nil {
		t.Fatal(err)
	}
	if !Equal(key, "the-secret", h) || Equal(key, "the-secreT", h) {
		t.Fatal("Hasher and Equal disagree")
	}
}
