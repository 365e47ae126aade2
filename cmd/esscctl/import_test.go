package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/essc-project/essc/idp/card"
)

func writeFile(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestParseImportRow(t *testing.T) {
	now := time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC)
	cols, err := parseImportHeader([]string{"\ufeffCard_Number", "ssn", "name", "region", "issued_on"})
	if err != nil {
		t.Fatal(err)
	}
	good := testSSN("19560314", "121")
	tests := []struct {
		name string
		rec  []string
		want string
	}{
		{"ok/row", []string{"a00000001", good, " 张秀英 ", "411302", "2019-05-01"}, ""},
		{"fail/fields", []string{"A00000001", good, "x", "411302"}, "expected 5 fields"},
		{"fail/number", []string{"A-1", good, "x", "411302", "2019-05-01"}, "invalid card number"},
		{"fail/ssn-check", []string{"A00000001", good[:17] + "Y", "x", "411302", "2019-05-01"}, "invalid ssn: format"},
		{"fail/ssn-checksum", []string{"A00000001", good[:17] + map[bool]string{true: "1", false: "0"}[good[17] == '0'], "x", "411302", "2019-05-01"}, "invalid ssn: check character"},
		{"fail/name", []string{"A00000001", good, "", "411302", "2019-05-01"}, "invalid name"},
		{"fail/region", []string{"A00000001", good, "x", "99", "2019-05-01"}, "invalid region"},
		{"fail/date-format", []string{"A00000001", good, "x", "411302", "01/05/2019"}, "invalid issued_on"},
		{"fail/date-future", []string{"A00000001", good, "x", "411302", "2027-01-01"}, "invalid issued_on"},
		{"fail/date-before-birth", []string{"A00000001", good, "x", "411302", "1950-01-01"}, "invalid issued_on"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row, err := parseImportRow(tt.rec, cols, 7, now)
			if tt.want == "" {
				if err != nil || row.Number != "A00000001" || row.Name != "张秀英" || row.Line != 7 {
					t.Fatalf("%+v %v", row, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			for _, v := range tt.rec {
				if len(v) > 3 && strings.Contains(err.Error(), v) {
					t.Fatalf("reason leaks a value: %v", err)
				}
			}
		})
	}
	for name, hdr := range map[string][]string{
		"fail/header-missing":   {"card_number", "ssn", "name", "region"},
		"fail/header-duplicate": {"card_number", "ssn", "ssn", "name", "region", "issued_on"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := parseImportHeader(hdr); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestImportResumable(t *testing.T) {
	e := newCtlEnv(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "cards.csv")
	var b strings.Builder
	b.WriteString("card_number,ssn,name,region,issued_on\n") // line 1
	for i := 0; i < 250; i++ {                               // lines 2..251
		fmt.Fprintf(&b, "C%08d,%s,持卡人%d,411302,2020-01-02\n", i, testSSN("19800101", fmt.Sprintf("%03d", i)), i)
	}
	b.WriteString("C99999999,411302198001011231,坏,411302,2020-01-02\n")                    // 252: checksum (most likely) or fine
	b.WriteString("BAD,x,y,z\n")                                                           // 253
	b.WriteString("C00000000," + testSSN("19800101", "000") + ",持卡人0,411302,2020-01-02\n") // 254: duplicate number
	b.WriteString("\"unterminated,x\n")                                                    // 255..
	writeFile(t, file, b.String())

	code, out, errOut := e.run(t, "cards", "import", file, "--batch", "100")
	if code != 0 {
		t.Fatalf("import: %s", errOut)
	}
	if !strings.Contains(out, "imported 250 cards") && !strings.Contains(out, "imported 251 cards") {
		t.Fatalf("%s", out)
	}
	if !strings.Contains(errOut, "import:") || !strings.Contains(errOut, "rows/s") {
		t.Fatalf("no progress on stderr: %q", errOut)
	}
	rep, _ := os.ReadFile(file + ".rejected.csv")
	for _, want := range []string{"line,reason", "253,\"expected 5 fields", "254,card number already exists", "malformed CSV record"} {
		if !strings.Contains(string(rep), want) {
			t.Fatalf("report lacks %q:\n%s", want, rep)
		}
	}
	// Re-running resumes after the checkpoint: nothing is read again.
	code, out, _ = e.run(t, "cards", "import", file)
	if code != 0 || !strings.Contains(out, "imported 0 cards") || !strings.Contains(out, "0 rows rejected") {
		t.Fatalf("resume: %s", out)
	}
	// --restart re-reads everything; the idempotent sink loads nothing twice.
	code, out, _ = e.run(t, "cards", "import", file, "--restart", "--quiet")
	if code != 0 || !strings.Contains(out, "imported 0 cards") {
		t.Fatalf("restart: %s", out)
	}
	// Imported cards are real cards with the initial PIN.
	code, out, _ = e.run(t, "cards", "show", "C00000042")
	if code != 0 || !strings.Contains(out, `"must_change": true`) || !strings.Contains(out, "持卡人42") {
		t.Fatalf("show: %s", out)
	}
	code, out, _ = e.run(t, "audit", "list")
	if code != 0 || strings.Count(out, "card.import") != 3 {
		t.Fatalf("audit: %s", out)
	}
	t.Run("fail/bad-header", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.csv")
		writeFile(t, bad, "number,ssn\n")
		if code, _, errOut := e.run(t, "cards", "import", bad); code != 1 || !strings.Contains(errOut, "missing column") {
			t.Fatalf("%d %s", code, errOut)
		}
	})
	t.Run("fail/missing-file", func(t *testing.T) {
		if code, _, _ := e.run(t, "cards", "import", filepath.Join(dir, "nope.csv")); code != 1 {
			t.Fatal(code)
		}
	})
	t.Run("fail/bad-batch", func(t *testing.T) {
		if code, _, _ := e.run(t, "cards", "import", file, "--batch", "1"); code != 1 {
			t.Fatal(code)
		}
	})
}

func FuzzParseImportRow(f *testing.F) {
	good := testSSN("19560314", "121")
	f.Add("A00000001", good, "张秀英", "411302", "2019-05-01")
	f.Add("", "", "", "", "")
	f.Add("a0000000１", good[:17]+"x", "\x00", "41130", "2019-02-30")
	cols := importCols{0, 1, 2, 3, 4}
	now := time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, number, ssn, name, region, issued string) {
		row, err := parseImportRow([]string{number, ssn, name, region, issued}, cols, 2, now)
		if err != nil {
			for _, v := range []string{number, ssn, name} {
				if len(v) > 4 && strings.Contains(err.Error(), v) {
					t.Fatalf("reason leaks input: %v", err)
				}
			}
			return
		}
		if _, err := card.ParseCardNumber(row.Number); err != nil || row.Number != strings.ToUpper(strings.TrimSpace(number)) {
			t.Fatalf("accepted bad number %q", row.Number)
		}
		if _, err := card.ParseSSN(row.SSN, now); err != nil {
			t.Fatalf("accepted bad ssn: %v", err)
		}
		if row.IssuedOn.After(now) {
			t.Fatal("future issue date")
		}
	})
}

// BenchmarkImportCommand runs `esscctl cards import` (CSV parsing, per-row
// validation, PIN verifier, SM4-GCM + blind index, batched sink) on a file
// of ESSC_BENCH_IMPORT_ROWS rows (default 20000) into a fresh SQLite file,
// and into a fresh PostgreSQL schema when ESSC_TEST_DATABASE_URL is set.
// It reports rows/s.
func BenchmarkImportCommand(b *testing.B) {
	n := 20000
	if v := os.Getenv("ESSC_BENCH_IMPORT_ROWS"); v != "" {
		fmt.Sscan(v, &n)
	}
	file := filepath.Join(b.TempDir(), "cards.csv")
	fh, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Fprintln(fh, "card_number,ssn,name,region,issued_on")
	for i := 0; i < n; i++ {
		birth := time.Date(1940, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i%20000).Format("20060102")
		fmt.Fprintf(fh, "D%08d,%s,持卡人%d,411302,2020-01-02\n", i, testSSN(birth, fmt.Sprintf("%03d", i/20000%1000)), i)
	}
	fh.Close()
	targets := map[string]func(b *testing.B) string{
		"sqlite": func(b *testing.B) string { return "sqlite://" + filepath.Join(b.TempDir(), "r.db") },
	}
	if url := os.Getenv("ESSC_TEST_DATABASE_URL"); url != "" {
		targets["postgres"] = func(b *testing.B) string { return benchPGSchema(b, url) }
	}
	for name, mk := range targets {
		b.Run(name, func(b *testing.B) {
			keys := filepath.Join(b.TempDir(), "keys")
			var total time.Duration
			for b.Loop() {
				db := mk(b)
				var out, errOut strings.Builder
				start := time.Now()
				code := dispatch([]string{"cards", "import", file, "--restart", "--quiet", "--batch", "20000", "--database", db, "--keys", keys}, &out, &errOut)
				total += time.Since(start)
				if code != 0 || !strings.Contains(out.String(), fmt.Sprintf("imported %d cards", n)) {
					b.Fatalf("%d %s %s", code, out.String(), errOut.String())
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "rows/s")
		})
	}
}
