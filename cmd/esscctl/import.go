package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/storage"
)

// importColumns is the CSV header of `esscctl cards import` (any order,
// case-insensitive; a UTF-8 BOM is ignored). issued_on is YYYY-MM-DD.
//
//	card_number,ssn,name,region,issued_on
//	A12345678,411302198503141234,张三,411302,2019-05-01
var importColumns = []string{"card_number", "ssn", "name", "region", "issued_on"}

// importCols maps each column to its index in the file.
type importCols [5]int

// parseImportHeader checks the header row and returns the column positions.
func parseImportHeader(rec []string) (importCols, error) {
	var cols importCols
	for i := range cols {
		cols[i] = -1
	}
	for i, h := range rec {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		for j, want := range importColumns {
			if h == want {
				if cols[j] != -1 {
					return cols, fmt.Errorf("header: column %s appears twice", want)
				}
				cols[j] = i
			}
		}
	}
	for j, c := range cols {
		if c == -1 {
			return cols, fmt.Errorf("header: missing column %s (want %s)", importColumns[j], strings.Join(importColumns, ","))
		}
	}
	return cols, nil
}

// errRow is a rejected row's reason: fixed text, never the row's values
// (the report file must not become a PII leak).
type errRow string

func (e errRow) Error() string { return string(e) }

// parseImportRow validates one CSV record with the card domain's rules and
// returns the import row (without card id and PIN verifier).
func parseImportRow(rec []string, cols importCols, line int, now time.Time) (storage.CardImport, error) {
	field := func(i int) string {
		if cols[i] >= len(rec) {
			return ""
		}
		return rec[cols[i]]
	}
	if len(rec) != len(importColumns) {
		return storage.CardImport{}, errRow(fmt.Sprintf("expected %d fields, found %d", len(importColumns), len(rec)))
	}
	number, err := card.ParseCardNumber(field(0))
	if err != nil {
		return storage.CardImport{}, errRow("invalid card number")
	}
	ssn, err := card.ParseSSN(field(1), now)
	if err != nil {
		switch {
		case errors.Is(err, card.ErrSSNChecksum):
			return storage.CardImport{}, errRow("invalid ssn: check character")
		case errors.Is(err, card.ErrSSNRegion):
			return storage.CardImport{}, errRow("invalid ssn: region")
		case errors.Is(err, card.ErrSSNBirthDate):
			return storage.CardImport{}, errRow("invalid ssn: birth date")
		}
		return storage.CardImport{}, errRow("invalid ssn: format")
	}
	name, err := card.CheckName(field(2))
	if err != nil {
		return storage.CardImport{}, errRow("invalid name")
	}
	region, err := card.ParseRegion(field(3))
	if err != nil {
		return storage.CardImport{}, errRow("invalid region")
	}
	issued, err := time.Parse(time.DateOnly, strings.TrimSpace(field(4)))
	if err != nil || issued.After(now) || issued.Before(ssn.Birth()) {
		return storage.CardImport{}, errRow("invalid issued_on (YYYY-MM-DD, between birth and today)")
	}
	return storage.CardImport{Line: line, SSN: ssn.Raw(), Name: name, Number: number, Region: region, IssuedOn: issued}, nil
}

// countingReader counts bytes for the progress display.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// importStats is the outcome of one run.
type importStats struct {
	Read, Inserted, HoldersCreated, Rejected, Existing, Resumed int
}

// runImport implements `esscctl cards import FILE`. Streaming: one record
// at a time, batches of --batch rows go to the registry's ImportCards
// (COPY on PostgreSQL). Rejected rows go to the report (line,reason); rows
// whose card number already exists are reported too and never loaded
// twice. After each committed batch the last line is checkpointed in
// FILE.progress, so a re-run continues after it (--restart ignores it; the
// sink is idempotent either way).
func runImport(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cards import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf regFlags
	rf.register(fs)
	rf.timeout = 0
	report := fs.String("report", "", "file for rejected rows (default FILE.rejected.csv)")
	batch := fs.Int("batch", 10000, "rows per registry batch and checkpoint (100-100000)")
	restart := fs.Bool("restart", false, "ignore FILE.progress and start from the first row")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: esscctl cards import FILE.csv [--report FILE] [--batch N] [--restart]")
	}
	if *batch < 100 || *batch > 100000 {
		return errors.New("--batch must be 100-100000")
	}
	path := pos[0]
	if *report == "" {
		*report = path + ".rejected.csv"
	}
	progressPath := path + ".progress"
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var size int64
	if st, err := f.Stat(); err == nil {
		size = st.Size()
	}
	resumeAfter := 0
	if !*restart {
		if b, err := os.ReadFile(progressPath); err == nil {
			if resumeAfter, err = strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(string(b), "line "))); err != nil {
				return fmt.Errorf("%s is corrupt (delete it or use --restart)", progressPath)
			}
		}
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if resumeAfter > 0 {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	rep, err := os.OpenFile(*report, flags, 0o600)
	if err != nil {
		return err
	}
	defer rep.Close()
	repw := csv.NewWriter(rep)
	if resumeAfter == 0 {
		repw.Write([]string{"line", "reason"})
	}

	ctx := context.Background()
	if rf.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rf.timeout)
		defer cancel()
	}
	reg, err := rf.open(ctx, stderr)
	if err != nil {
		return err
	}
	defer reg.store.Close()

	cr := &countingReader{r: f}
	r := csv.NewReader(bufio.NewReaderSize(cr, 1<<20))
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	hdr, err := r.Read()
	if err != nil {
		return fmt.Errorf("reading header: %w", err)
	}
	cols, err := parseImportHeader(hdr)
	if err != nil {
		return err
	}
	now := time.Now()
	start := now
	var st importStats
	rows := make([]storage.CardImport, 0, *batch)
	lastLine := 0
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		res, err := reg.store.ImportCards(ctx, rows)
		if err != nil {
			return fmt.Errorf("loading rows up to line %d: %w", lastLine, err)
		}
		st.Inserted += res.Inserted
		st.HoldersCreated += res.HoldersCreated
		st.Existing += len(res.Skipped)
		for _, l := range res.Skipped {
			repw.Write([]string{strconv.Itoa(l), "card number already exists"})
		}
		repw.Flush()
		if err := repw.Error(); err != nil {
			return err
		}
		rows = rows[:0]
		if err := writeProgress(progressPath, lastLine); err != nil {
			return err
		}
		if !*quiet {
			el := time.Since(start).Seconds()
			pct := 100.0
			if size > 0 {
				pct = float64(cr.n) * 100 / float64(size)
			}
			fmt.Fprintf(stderr, "\rimport: %5.1f%%  %d loaded, %d rejected, %d existing, %.0f rows/s   ",
				pct, st.Inserted, st.Rejected, st.Existing, float64(st.Inserted+st.Existing)/max(el, 1e-9))
		}
		return nil
	}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		var line int
		var pe *csv.ParseError
		switch {
		case err == nil:
			line, _ = r.FieldPos(0)
		case errors.As(err, &pe):
			line = pe.StartLine
		default:
			return err
		}
		if line <= resumeAfter {
			st.Resumed++
			continue
		}
		st.Read++
		lastLine = line
		if err != nil {
			st.Rejected++
			repw.Write([]string{strconv.Itoa(line), "malformed CSV record"})
			continue
		}
		row, perr := parseImportRow(rec, cols, line, now)
		if perr != nil {
			st.Rejected++
			repw.Write([]string{strconv.Itoa(line), perr.Error()})
			continue
		}
		row.CardID = newCardID()
		row.PINVerifier = card.PINVerifier(reg.secrets.PINKey, row.CardID, card.InitialPIN)
		rows = append(rows, row)
		if len(rows) == *batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	repw.Flush()
	if lastLine > 0 {
		if err := writeProgress(progressPath, lastLine); err != nil {
			return err
		}
	}
	if !*quiet {
		fmt.Fprintln(stderr)
	}
	details, _ := json.Marshal(map[string]any{"file": filepath.Base(path), "read": st.Read, "inserted": st.Inserted,
		"holders_created": st.HoldersCreated, "rejected": st.Rejected, "existing": st.Existing, "resumed_after_line": resumeAfter})
	if _, err := reg.store.AppendAudit(ctx, storage.AuditEntry{Actor: reg.actor.ID, Action: "card.import", Target: filepath.Base(path), Details: details}); err != nil {
		return fmt.Errorf("import done but not audited: %w", err)
	}
	fmt.Fprintf(stdout, "imported %d cards (%d new holders); %d rows rejected, %d card numbers already present, %d rows skipped as done before; report: %s\n",
		st.Inserted, st.HoldersCreated, st.Rejected, st.Existing, st.Resumed, *report)
	return nil
}

func writeProgress(path string, line int) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte("line "+strconv.Itoa(line)+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func newCardID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}
