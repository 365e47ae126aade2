package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestParseRedisCPU(t *testing.T) {
	info := "# CPU\r\nused_cpu_sys:1.250000\r\nused_cpu_user:2.500000\r\nused_cpu_sys_children:9.0\r\nused_cpu_sys_main_thread:1.2\r\n"
	if got, err := parseRedisCPU(info); err != nil || got != 3.75 {
		t.Fatalf("parseRedisCPU = %v, %v; want 3.75 (children and main-thread lines not added)", got, err)
	}
	for name, bad := range map[string]string{
		"fail/empty":        "",
		"fail/one-of-two":   "used_cpu_sys:1.0\n",
		"fail/not-a-number": "used_cpu_sys:x\nused_cpu_user:1\n",
	} {
		if _, err := parseRedisCPU(bad); err == nil {
			t.Errorf("%s: accepted %q", name, bad)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	line := "4242 (postgres: a (b) c) S 2263 2263 2263 0 -1 4194560 1 0 0 0 17 5 3 2 20 0 1 0 100 0 0\n"
	ppid, times, err := parseProcStat(line)
	if err != nil || ppid != 2263 || times != [4]int64{17, 5, 3, 2} {
		t.Fatalf("parseProcStat = %d, %v, %v", ppid, times, err)
	}
	for name, bad := range map[string]string{
		"fail/no-name":    "4242 postgres S 1 2 3",
		"fail/short":      "4242 (postgres) S 1 2 3",
		"fail/bad-ppid":   "4242 (p) S x 1 1 0 -1 0 0 0 0 0 1 1 1 1 20 0 1 0",
		"fail/bad-times":  "4242 (p) S 1 1 1 0 -1 0 0 0 0 0 a 1 1 1 20 0 1 0",
		"fail/empty-line": "",
	} {
		if _, _, err := parseProcStat(bad); err == nil {
			t.Errorf("%s: accepted %q", name, bad)
		}
	}
}

// TestProcTreeCPU: the CPU of a child this process has waited for counts in
// its parent's tree (a PostgreSQL backend that ended during the run).
func TestProcTreeCPU(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	before, err := procTreeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command("sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	spent := (child.ProcessState.UserTime() + child.ProcessState.SystemTime()).Seconds()
	after, err := procTreeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if spent < 0.05 {
		t.Skipf("the child spent only %.3f s", spent)
	}
	if after-before < spent-2.0/userHZ {
		t.Fatalf("tree CPU grew %.3f s, the waited-for child spent %.3f s", after-before, spent)
	}
	if _, err := procTreeCPU(1 << 30); err == nil {
		t.Fatal("a process that does not exist measured")
	}
}

func TestPostmasterPIDRefusesRemote(t *testing.T) {
	for _, u := range []string{"postgres://u@10.0.0.7:5432/db", "postgres://u@db.example:5432/db"} {
		if _, err := postmasterPID(context.Background(), u); !errors.Is(err, ErrNotLoopback) {
			t.Errorf("%s: %v, want ErrNotLoopback", u, err)
		}
	}
}

func TestCPULines(t *testing.T) {
	r := Report{Machine: Machine{CPUs: 2}, Scenarios: []ScenarioResult{
		{Name: "qr-login", ServerCPUMSPerOp: 2, PostgresCPUMSPerOp: 1, RedisCPUMSPerOp: 0.5, LoadCPUMSPerOp: 0.5},
		{Name: "embedded-like", ServerCPUMSPerOp: 1, PostgresCPUMSPerOp: -1, RedisCPUMSPerOp: -1, LoadCPUMSPerOp: 0.5},
	}}
	lines := r.cpuLines()
	if len(lines) != 1 || !strings.Contains(lines[0], "cpu qr-login: esscd 2.000 + PostgreSQL 1.000 + Redis 0.500 + esscbench 0.500 = 4.000 ms per operation; 2 CPUs allow at most 500/s") {
		t.Fatalf("cpuLines = %q", lines)
	}
}
