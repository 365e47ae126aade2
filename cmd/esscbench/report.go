package main

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
)

// Machine records where a report was measured.
type Machine struct {
	GOOS    string  `json:"goos"`
	GOARCH  string  `json:"goarch"`
	CPUs    int     `json:"cpus"`
	Go      string  `json:"go"`
	CPU     string  `json:"cpu,omitempty"`
	LoadAvg float64 `json:"load_avg_1m"` // at the start of the run (other work on the machine)
}

// Report is one esscbench run: one backend (Label), several scenarios.
type Report struct {
	Tool      string    `json:"tool"` // "esscbench"
	Label     string    `json:"label"`
	Date      string    `json:"date"`
	Machine   Machine   `json:"machine"`
	Reference Reference `json:"reference"`
	Workers   int       `json:"workers"`
	Rate      float64   `json:"rate,omitempty"` // fixed start rate per second (open loop); 0: closed loop
	Requests  int       `json:"requests,omitempty"`
	Duration  string    `json:"duration,omitempty"`
	IdleRSS   float64   `json:"server_idle_rss_mib"` // after start-up, before any setup; -1 unknown
	// Goroutines after setup and after the last scenario (polled until back
	// at the start count, at most 10 s): a growth is a leak candidate.
	GoroutinesStart float64          `json:"server_goroutines_start"`
	GoroutinesEnd   float64          `json:"server_goroutines_end"`
	Scenarios       []ScenarioResult `json:"scenarios"`
}

// WriteJSON writes r indented.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadReport reads a report written by WriteJSON.
func ReadReport(path string) (Report, error) {
	var r Report
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("esscbench: %s: %w", path, err)
	}
	if r.Tool != "esscbench" {
		return r, fmt.Errorf("esscbench: %s is not an esscbench report", path)
	}
	return r, nil
}

func fmtOpt(v float64, digits int) string {
	if v < 0 {
		return "—"
	}
	return fmt.Sprintf("%.*f", digits, v)
}

func fmtErrors(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// WriteTable prints the human-readable table: one row per scenario, then
// one indented row per step.
func (r *Report) WriteTable(w io.Writer) error {
	rate := ""
	if r.Rate > 0 {
		rate = fmt.Sprintf(", started at %g/s (latency from the scheduled start)", r.Rate)
	}
	fmt.Fprintf(w, "esscbench %s — %s, %d CPU, %s, load %.2f; reference SM2 sign %.1f µs (CPU %.1f), verify %.1f µs (CPU %.1f); %d workers%s; idle RSS %s MiB\n",
		r.Label, r.Date, r.Machine.CPUs, r.Machine.Go, r.Machine.LoadAvg, r.Reference.SM2SignNS/1e3, r.Reference.SM2SignCPUNS/1e3,
		r.Reference.SM2VerifyNS/1e3, r.Reference.SM2VerifyCPUNS/1e3, r.Workers, rate, fmtOpt(r.IdleRSS, 1))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario / step\tops\tops/s\treq/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tcpu ms/op\tcpu/sign\tload cpu ms/op\tredis/op\tredis cpu ms/op\tpg cpu ms/op\tRSS MiB\terrors\t")
	for _, s := range r.Scenarios {
		rate := fmt.Sprintf("%.1f", s.OpsPerSec)
		if s.ItemsPerOp > 1 {
			rate += fmt.Sprintf(" (×%d)", s.ItemsPerOp)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%.1f\t%s\t%s\t%s\t%s\t%.1f\t%s\t\n", s.Name, s.Ops, rate, s.ReqPerSec,
			s.Op.P50, s.Op.P90, s.Op.P99, s.Op.Max, fmtOpt(s.ServerCPUMSPerOp, 3), s.CPURatio, fmtOpt(s.LoadCPUMSPerOp, 3), fmtOpt(s.RedisCmdsPerOp, 1),
			fmtOpt(s.RedisCPUMSPerOp, 3), fmtOpt(s.PostgresCPUMSPerOp, 3), s.RSSMiB, fmtErrors(s.Errors))
		if len(s.Steps) > 1 {
			for _, st := range s.Steps {
				fmt.Fprintf(tw, "  %s\t%d\t\t\t%.2f\t%.2f\t%.2f\t%.2f\t\t\t\t\t\t\t\t\t\n", st.Name, st.Count, st.P50, st.P90, st.P99, st.Max)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, l := range append(r.floorLines(), r.cpuLines()...) {
		fmt.Fprintln(w, l)
	}
	_, err := fmt.Fprintf(w, "server goroutines: %.0f after setup, %.0f at the end\n", r.GoroutinesStart, r.GoroutinesEnd)
	return err
}

// floorLines relates the server CPU of each scenario with a cryptographic
// floor to that floor and, when http-floor ran in the same report, to the
// floor plus what its requests cost before any handler work (requests per
// operation × http-floor's server CPU per request).
func (r *Report) floorLines() []string {
	httpMS := -1.0
	for _, s := range r.Scenarios {
		if s.Name == "http-floor" && s.ServerCPUMSPerOp > 0 {
			httpMS = s.ServerCPUMSPerOp
		}
	}
	var out []string
	for _, s := range r.Scenarios {
		if s.CryptoFloorMS <= 0 || s.ServerCPUMSPerOp <= 0 || s.OpsPerSec <= 0 {
			continue
		}
		n := sm2Ops[s.Name]
		l := fmt.Sprintf("floor %s: SM2 %d verify + %d sign = %.0f µs; server CPU %.0f µs = %.1f× that",
			s.Name, n.verify, n.sign, s.CryptoFloorMS*1e3, s.ServerCPUMSPerOp*1e3, s.ServerCPUMSPerOp/s.CryptoFloorMS)
		if httpMS > 0 {
			reqs := math.Round(s.ReqPerSec / s.OpsPerSec)
			both := s.CryptoFloorMS + reqs*httpMS
			l += fmt.Sprintf("; + %.0f requests × %.0f µs (http-floor) = %.0f µs (%.2f× the SM2 floor), server CPU %.1f× that",
				reqs, httpMS*1e3, both*1e3, both/s.CryptoFloorMS, s.ServerCPUMSPerOp/both)
		}
		out = append(out, l)
	}
	return out
}

// cpuLines adds up, for each scenario where all four were measured, what
// esscd, PostgreSQL, Redis and the tool itself spent per operation, and the
// rate those together allow on this machine's CPUs.
func (r *Report) cpuLines() []string {
	var out []string
	for _, s := range r.Scenarios {
		if s.ServerCPUMSPerOp <= 0 || s.PostgresCPUMSPerOp <= 0 || s.RedisCPUMSPerOp < 0 || s.LoadCPUMSPerOp < 0 {
			continue
		}
		sum := s.ServerCPUMSPerOp + s.PostgresCPUMSPerOp + s.RedisCPUMSPerOp + s.LoadCPUMSPerOp
		out = append(out, fmt.Sprintf("cpu %s: esscd %.3f + PostgreSQL %.3f + Redis %.3f + esscbench %.3f = %.3f ms per operation; %d CPUs allow at most %.0f/s",
			s.Name, s.ServerCPUMSPerOp, s.PostgresCPUMSPerOp, s.RedisCPUMSPerOp, s.LoadCPUMSPerOp, sum, r.Machine.CPUs, float64(r.Machine.CPUs)*1000/sum))
	}
	return out
}

func xmlText(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// WriteSVG draws throughput (operations/s) and whole-operation p99 per
// scenario as two bar panels; several reports (backends) are drawn as
// grouped bars with a legend. Pure SVG 1.1, no scripts.
func WriteSVG(w io.Writer, reports []Report) error {
	var names []string
	seen := map[string]bool{}
	for _, r := range reports {
		for _, s := range r.Scenarios {
			if !seen[s.Name] {
				seen[s.Name] = true
				names = append(names, s.Name)
			}
		}
	}
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}
	const left, barH, gap, panelW = 190, 14, 10, 360
	groupH := len(reports)*barH + gap
	height := 70 + len(names)*groupH + 20*len(reports) + 20
	width := left + 2*panelW + 120
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#fff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14">esscbench: throughput and p99 latency per scenario</text>`+"\n", 10)
	fmt.Fprintf(&b, `<text x="%d" y="44" font-weight="bold">operations/s</text><text x="%d" y="44" font-weight="bold">p99 ms per operation</text>`+"\n",
		left, left+panelW+40)
	maxRate, maxP99 := 0.0, 0.0
	get := func(r Report, name string) (ScenarioResult, bool) {
		for _, s := range r.Scenarios {
			if s.Name == name {
				return s, true
			}
		}
		return ScenarioResult{}, false
	}
	for _, r := range reports {
		for _, s := range r.Scenarios {
			maxRate, maxP99 = max(maxRate, s.OpsPerSec), max(maxP99, s.Op.P99)
		}
	}
	scale := func(v, m float64, width int) int {
		if m <= 0 {
			return 0
		}
		return int(v / m * float64(width-60))
	}
	y := 56
	for _, n := range names {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+groupH/2, xmlText(n))
		for i, r := range reports {
			s, ok := get(r, n)
			if !ok {
				continue
			}
			c := colors[i%len(colors)]
			by := y + i*barH
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/><text x="%d" y="%d">%.0f</text>`+"\n",
				left, by, scale(s.OpsPerSec, maxRate, panelW), barH-2, c, left+scale(s.OpsPerSec, maxRate, panelW)+4, by+barH-4, s.OpsPerSec)
			px := left + panelW + 40
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/><text x="%d" y="%d">%.1f</text>`+"\n",
				px, by, scale(s.Op.P99, maxP99, panelW), barH-2, c, px+scale(s.Op.P99, maxP99, panelW)+4, by+barH-4, s.Op.P99)
		}
		y += groupH
	}
	for i, r := range reports {
		ly := y + 10 + i*20
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s — %s, %d CPU, %d workers, SM2 sign %.1f µs</text>`+"\n",
			left, ly, colors[i%len(colors)], left+18, ly+10, xmlText(r.Label), xmlText(r.Date), r.Machine.CPUs, r.Workers, r.Reference.SM2SignNS/1e3)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func jsonEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc
}
