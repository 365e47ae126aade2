// Package storage holds the contracts of essc's state and their sentinel errors.
// Backends live in the sub-packages; only cmd/* imports a concrete backend.
package storage
