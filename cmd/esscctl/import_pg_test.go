package main

import (
	"testing"

	"github.com/essc-project/essc/storage/registrytest"
)

// benchPGSchema is registrytest.PostgresSchema.
func benchPGSchema(tb testing.TB, url string) string { return registrytest.PostgresSchema(tb, url) }
