package signing

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// StateFile is the name of the KeyDir state file.
const StateFile = "keys.json"

// keyDirVersion is the state file format version.
const keyDirVersion = 1

// stateFile is the JSON form of a KeyDir's state.
type stateFile struct {
	Version int          `json:"version"`
	Keys    []stateEntry `json:"keys"`
}

type stateEntry struct {
	Kid        string    `json:"kid"`
	Alg        string    `json:"alg"`
	File       string    `json:"file"`
	PublishAt  time.Time `json:"publish_at"`
	ActivateAt time.Time `json:"activate_at"`
	RetireAt   time.Time `json:"retire_at,omitzero"`
	RemoveAt   time.Time `json:"remove_at,omitzero"`
}

// KeyDir is a directory of PKCS #8 PEM key files (one per key, 0600) plus
// a JSON state file (keys.json) with each key's rotation timestamps; the
// directory is created 0700. With a password, key files are encrypted
// (see MarshalPKCS8PEM). A KeyDir is meant for one writer process; the
// methods are safe for concurrent use within it.
type KeyDir struct {
	path     string
	password []byte
	set      *KeySet
	mu       sync.Mutex // serialises Save
}

// OpenKeyDir opens (creating it 0700 if absent) the key directory at path
// and loads its keys into a KeySet configured by cfg. Every key file must
// parse with password, match the kid (RFC 7638 thumbprint) and alg recorded
// in the state file; anything else is an error (a directory is never
// half-loaded). An empty directory yields an empty set: call EnsureDefaults.
func OpenKeyDir(path string, password []byte, cfg KeySetConfig) (*KeyDir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("keydir: %w", err)
	}
	d := &KeyDir{path: path, password: password}
	raw, err := os.ReadFile(filepath.Join(path, StateFile))
	var entries []Entry
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("keydir: %w", err)
	default:
		if entries, err = d.load(raw); err != nil {
			return nil, err
		}
	}
	if d.set, err = NewKeySet(cfg, entries...); err != nil {
		return nil, fmt.Errorf("keydir %s: %w", path, err)
	}
	return d, nil
}

func (d *KeyDir) load(raw []byte) ([]Entry, error) {
	var st stateFile
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("keydir: %s: %v: %w", StateFile, err, ErrMalformed)
	}
	if dec.More() {
		return nil, fmt.Errorf("keydir: %s: trailing data: %w", StateFile, ErrMalformed)
	}
	if st.Version != keyDirVersion {
		return nil, fmt.Errorf("keydir: %s version %d: %w", StateFile, st.Version, ErrMalformed)
	}
	entries := make([]Entry, 0, len(st.Keys))
	for _, se := range st.Keys {
		if se.File != keyFileName(se.Alg, se.Kid) {
			return nil, fmt.Errorf("keydir: key %q: file name %q: %w", se.Kid, se.File, ErrMalformed)
		}
		pemData, err := os.ReadFile(filepath.Join(d.path, se.File))
		if err != nil {
			return nil, fmt.Errorf("keydir: %w", err)
		}
		k, err := ParsePKCS8PEM(pemData, d.password)
		if err != nil {
			return nil, fmt.Errorf("keydir: %s: %w", se.File, err)
		}
		if k.alg != se.Alg || k.id != se.Kid {
			return nil, fmt.Errorf("keydir: %s holds %s key %s, state says %s %s: %w",
				se.File, k.alg, k.id, se.Alg, se.Kid, ErrInvalidKey)
		}
		entries = append(entries, Entry{Key: k, PublishAt: se.PublishAt, ActivateAt: se.ActivateAt,
			RetireAt: se.RetireAt, RemoveAt: se.RemoveAt})
	}
	return entries, nil
}

// keyFileName is "<alg>-<kid>.pem" in lower-case alg; kids of keys made
// here are base64url thumbprints, so the name is always a plain file name.
func keyFileName(alg, kid string) string {
	if kid == "" || strings.ContainsAny(kid, `/\.`) || !SupportedAlg(alg) {
		return ""
	}
	return strings.ToLower(alg) + "-" + kid + ".pem"
}

// isKeyFileName reports whether n has the form of a key file of ours, so
// Save never deletes other files sharing the directory (e.g. registry keys).
func isKeyFileName(n string) bool {
	if !strings.HasSuffix(n, ".pem") {
		return false
	}
	for _, alg := range Algs() {
		if strings.HasPrefix(n, strings.ToLower(alg)+"-") {
			return true
		}
	}
	return false
}

// Reload re-reads the directory and replaces the set's entries in place (the
// *KeySet handed to other components stays the same), so changes made by
// another process (esscctl keys rotate) are picked up. On any error the set
// is left unchanged. A missing state file is an error here.
func (d *KeyDir) Reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	raw, err := os.ReadFile(filepath.Join(d.path, StateFile))
	if err != nil {
		return fmt.Errorf("keydir: %w", err)
	}
	entries, err := d.load(raw)
	if err != nil {
		return err
	}
	return d.set.Replace(entries)
}

// Path returns the directory.
func (d *KeyDir) Path() string { return d.path }

// Set returns the loaded KeySet (live: changes made through it are saved by Save).
func (d *KeyDir) Set() *KeySet { return d.set }

// Save writes every key file not yet on disk, then the state file
// (atomically: temp file + rename), then deletes the files of keys no
// longer in the set. Files are 0600.
func (d *KeyDir) Save() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	entries := d.set.Entries()
	st := stateFile{Version: keyDirVersion, Keys: make([]stateEntry, 0, len(entries))}
	keep := map[string]bool{StateFile: true}
	for _, e := range entries {
		name := keyFileName(e.Key.alg, e.Key.id)
		if name == "" {
			return fmt.Errorf("keydir: kid %q cannot name a file: %w", e.Key.id, ErrInvalidKey)
		}
		keep[name] = true
		p := filepath.Join(d.path, name)
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			pemData, err := MarshalPKCS8PEM(e.Key, d.password)
			if err != nil {
				return fmt.Errorf("keydir: %w", err)
			}
			if err := writeFileAtomic(p, pemData); err != nil {
				return err
			}
		} else if err != nil {
			return fmt.Errorf("keydir: %w", err)
		}
		st.Keys = append(st.Keys, stateEntry{Kid: e.Key.id, Alg: e.Key.alg, File: name, PublishAt: e.PublishAt.UTC(),
			ActivateAt: e.ActivateAt.UTC(), RetireAt: e.RetireAt.UTC(), RemoveAt: e.RemoveAt.UTC()})
	}
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("keydir: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(d.path, StateFile), append(raw, '\n')); err != nil {
		return err
	}
	des, err := os.ReadDir(d.path)
	if err != nil {
		return fmt.Errorf("keydir: %w", err)
	}
	for _, de := range des {
		n := de.Name()
		if !keep[n] && isKeyFileName(n) && de.Type().IsRegular() {
			if err := os.Remove(filepath.Join(d.path, n)); err != nil {
				return fmt.Errorf("keydir: %w", err)
			}
		}
	}
	return nil
}

// writeFileAtomic writes data to path with mode 0600 via a synced temp file and rename.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("keydir: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("keydir: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("keydir: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("keydir: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keydir: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("keydir: %w", err)
	}
	return nil
}

// EnsureDefaults makes sure each of SM2SM3, ES256 and RS256 has an active
// key at now (generating them on first start) and saves when anything
// changed. It returns the keys it created or activated.
func (d *KeyDir) EnsureDefaults(now time.Time) ([]*Key, error) {
	made, err := d.set.EnsureActive(now, Algs()...)
	if err != nil {
		return made, err
	}
	if len(made) > 0 {
		return made, d.Save()
	}
	return made, nil
}

// Rotate runs KeySet.Rotate and saves.
func (d *KeyDir) Rotate(alg string, now time.Time) (*Key, error) {
	k, err := d.set.Rotate(alg, now)
	if err != nil {
		return nil, err
	}
	return k, d.Save()
}

// Maintain runs KeySet.Maintain and saves when it changed anything.
func (d *KeyDir) Maintain(now time.Time) (bool, error) {
	changed, err := d.set.Maintain(now)
	if err != nil || !changed {
		return changed, err
	}
	return true, d.Save()
}
