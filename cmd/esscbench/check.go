package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// Baseline is testdata/bench-baseline.json: reports of a reference run on
// this machine, one per label (backend).
type Baseline struct {
	Note    string   `json:"note"`
	Reports []Report `json:"reports"`
}

// ErrRegression is returned by Check when any scenario regressed.
var ErrRegression = errors.New("esscbench: performance regression")

// CheckLine is one comparison of Check.
type CheckLine struct {
	Label, Scenario, Metric string
	Baseline, Current       float64
	Change                  float64 // relative change, positive = worse
	Failed                  bool
	Skipped                 bool // the whole label was not run (e.g. no Redis/PostgreSQL configured)
	Reason                  string
}

// Check compares each baseline scenario with the same label and scenario in
// current, on ratios only: the throughput ratio may not fall and the CPU
// ratio may not rise by more than tolerance (0.15 = 15 %). A baseline
// scenario missing from current, or one with more than 1 % failed
// operations, fails too. Repeated reports of one label count with their
// best value of each ratio. A label (backend) absent from current is reported
// as skipped, not failed: the run may lack Redis/PostgreSQL. It returns every line and ErrRegression (wrapped)
// if any failed.
func Check(base Baseline, current []Report, tolerance float64) ([]CheckLine, error) {
	for _, r := range append(slices.Clone(base.Reports), current...) {
		if r.Rate > 0 {
			return nil, fmt.Errorf("esscbench: report %q was run at a fixed rate (--rate): its throughput is the rate, not a capacity to compare", r.Label)
		}
	}
	var lines []CheckLine
	current = MergeBest(current)
	find := func(label, name string) (ScenarioResult, bool) {
		for _, r := range current {
			if r.Label != label {
				continue
			}
			for _, s := range r.Scenarios {
				if s.Name == name {
					return s, true
				}
			}
		}
		return ScenarioResult{}, false
	}
	failed := 0
	for _, br := range base.Reports {
		if !slices.ContainsFunc(current, func(r Report) bool { return r.Label == br.Label }) {
			lines = append(lines, CheckLine{Label: br.Label, Scenario: "*", Metric: "-", Skipped: true, Reason: "backend not run"})
			continue
		}
		for _, bs := range br.Scenarios {
			cs, ok := find(br.Label, bs.Name)
			if !ok {
				lines = append(lines, CheckLine{Label: br.Label, Scenario: bs.Name, Metric: "-", Failed: true, Reason: "not measured in this run"})
				failed++
				continue
			}
			if e := cs.ErrorCount(); e*100 > cs.Ops+e {
				lines = append(lines, CheckLine{Label: br.Label, Scenario: bs.Name, Metric: "errors", Current: float64(e), Failed: true,
					Reason: "more than 1 % of operations failed: " + fmtErrors(cs.Errors)})
				failed++
			}
			if bs.ThroughputRatio > 0 {
				l := CheckLine{Label: br.Label, Scenario: bs.Name, Metric: "throughput_ratio", Baseline: bs.ThroughputRatio, Current: cs.ThroughputRatio,
					Change: (bs.ThroughputRatio - cs.ThroughputRatio) / bs.ThroughputRatio}
				if l.Change > tolerance {
					l.Failed, l.Reason = true, fmt.Sprintf("throughput fell %.0f %% relative to SM2 sign", l.Change*100)
					failed++
				}
				lines = append(lines, l)
			}
			if bs.CPURatio > 0 && cs.CPURatio > 0 {
				l := CheckLine{Label: br.Label, Scenario: bs.Name, Metric: "cpu_ratio", Baseline: bs.CPURatio, Current: cs.CPURatio,
					Change: (cs.CPURatio - bs.CPURatio) / bs.CPURatio}
				if l.Change > tolerance {
					l.Failed, l.Reason = true, fmt.Sprintf("server CPU per operation rose %.0f %% relative to SM2 sign", l.Change*100)
					failed++
				}
				lines = append(lines, l)
			}
		}
	}
	if failed > 0 {
		return lines, fmt.Errorf("%w: %d check(s) failed", ErrRegression, failed)
	}
	return lines, nil
}

// WriteCheck prints the comparison lines.
func WriteCheck(w io.Writer, lines []CheckLine) {
	for _, l := range lines {
		status := "ok  "
		if l.Failed {
			status = "FAIL"
		} else if l.Skipped {
			status = "SKIP"
		}
		fmt.Fprintf(w, "%s %-16s %-24s %-17s base %-10.4g now %-10.4g %+6.1f %% %s\n", status, l.Label, l.Scenario, l.Metric,
			l.Baseline, l.Current, l.Change*100, l.Reason)
	}
}

// ReadBaseline reads testdata/bench-baseline.json.
func ReadBaseline(path string) (Baseline, error) {
	var b Baseline
	raw, err := os.ReadFile(path)
	if err != nil {
		return b, err
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return b, fmt.Errorf("esscbench: %s: %w", path, err)
	}
	if len(b.Reports) == 0 {
		return b, fmt.Errorf("esscbench: %s holds no reports", path)
	}
	return b, nil
}

// MergeBest folds repeated reports of one label into one: each scenario
// keeps its best throughput ratio, its best CPU ratio and its lowest error
// rate (a shared machine only ever makes a run look worse). Other fields
// come from the first report of the label. Order of first appearance is kept.
func MergeBest(reports []Report) []Report {
	var out []Report
	idx := map[string]int{}
	for _, r := range reports {
		i, ok := idx[r.Label]
		if !ok {
			idx[r.Label] = len(out)
			r.Scenarios = slices.Clone(r.Scenarios)
			out = append(out, r)
			continue
		}
		for _, s := range r.Scenarios {
			j := slices.IndexFunc(out[i].Scenarios, func(b ScenarioResult) bool { return b.Name == s.Name })
			if j < 0 {
				out[i].Scenarios = append(out[i].Scenarios, s)
				continue
			}
			best := &out[i].Scenarios[j]
			best.ThroughputRatio = max(best.ThroughputRatio, s.ThroughputRatio)
			if s.CPURatio > 0 && (best.CPURatio <= 0 || s.CPURatio < best.CPURatio) {
				best.CPURatio = s.CPURatio
			}
			if s.ErrorCount()*(best.Ops+best.ErrorCount()) < best.ErrorCount()*(s.Ops+s.ErrorCount()) {
				best.Ops, best.Errors = s.Ops, s.Errors
			}
		}
	}
	return out
}
