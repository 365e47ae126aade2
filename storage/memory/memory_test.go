package memory_test

import (
	"testing"

	"github.com/essc-project/essc/storage"
	"github.com/essc-project/essc/storage/memory"
	"github.com/essc-project/essc/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, o storagetest.Options) storage.Sessions {
		s, err := memory.New(memory.Config{Now: o.Now, Lookup: o.Lookup, NewSession: o.NewSession,
			Subjects: o.Subjects, RefreshGrace: o.RefreshGrace})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestNewRejectsIncompleteConfig(t *testing.T) {
	if _, err := memory.New(memory.Config{}); err == nil {
		t.Fatal("New without Lookup/NewSession must fail")
	}
}
