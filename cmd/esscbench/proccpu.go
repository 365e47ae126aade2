package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"
)

// What Redis and PostgreSQL spend per operation, next to esscd and the tool:
// on a two-core host they share the cores, and a login on Redis+PostgreSQL
// costs the three servers together what the throughput is bounded by.

// redisCPU is the Redis server's CPU seconds (user + system, all threads)
// from INFO cpu.
func redisCPU(ctx context.Context, c *goredis.Client) (float64, error) {
	info, err := c.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	return parseRedisCPU(info)
}

// parseRedisCPU sums used_cpu_sys and used_cpu_user of an INFO cpu answer.
func parseRedisCPU(info string) (float64, error) {
	var sum float64
	found := 0
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (k != "used_cpu_sys" && k != "used_cpu_user") {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("esscbench: INFO cpu %q: %w", line, err)
		}
		sum += f
		found++
	}
	if found != 2 {
		return 0, fmt.Errorf("esscbench: INFO cpu without used_cpu_sys and used_cpu_user")
	}
	return sum, nil
}

// postmasterPID finds the PID of the PostgreSQL server behind dbURL, which
// must run on this machine: its data directory's postmaster.pid (reading
// data_directory needs a superuser or pg_read_all_settings).
func postmasterPID(ctx context.Context, dbURL string) (int, error) {
	cc, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return 0, err
	}
	// A server elsewhere may share the data directory's path with one here.
	if err := CheckLoopbackAddr(net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port)))); err != nil {
		return 0, err
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var dir string
	if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&dir); err != nil {
		return 0, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("esscbench: postmaster.pid: %q", first)
	}
	return pid, nil
}

// userHZ is the unit of /proc/*/stat's times on Linux.
const userHZ = 100

// procTreeCPU is the CPU seconds of process pid, its exited children it has
// waited for, and its living children: for a PostgreSQL postmaster, every
// backend, whether it ended during the measured interval or not.
func procTreeCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	_, t, err := parseProcStat(string(b))
	if err != nil {
		return 0, err
	}
	ticks := t[0] + t[1] + t[2] + t[3]
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile, or not ours to read
		}
		if ppid, t, err := parseProcStat(string(b)); err == nil && ppid == pid {
			ticks += t[0] + t[1]
		}
	}
	return float64(ticks) / userHZ, nil
}

// parseProcStat reads the parent PID and utime, stime, cutime, cstime of a
// /proc/PID/stat line; the command name may hold spaces and parentheses.
func parseProcStat(line string) (ppid int, times [4]int64, err error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, times, fmt.Errorf("esscbench: /proc stat %q", line)
	}
	f := strings.Fields(line[i+1:])
	// After the name: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
	if len(f) < 15 {
		return 0, times, fmt.Errorf("esscbench: /proc stat: %d fields after the name", len(f))
	}
	if ppid, err = strconv.Atoi(f[1]); err != nil {
		return 0, times, fmt.Errorf("esscbench: /proc stat ppid: %w", err)
	}
	for j := range times {
		if times[j], err = strconv.ParseInt(f[11+j], 10, 64); err != nil {
			return 0, times, fmt.Errorf("esscbench: /proc stat times: %w", err)
		}
	}
	return ppid, times, nil
}
