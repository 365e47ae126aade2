package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/essc-project/essc/idp/wallet/client"
)

// TestSentinelFailover runs the server on Redis through Sentinel (a master,
// a replica and one sentinel of the test's own on loopback; SQLite
// registry): a QR login completes; the sentinel is told to fail over and the
// old master is killed; the server follows the new master by itself —
// /readyz recovers, the access
// token issued before the failover still answers userinfo (replicated), and
// a new login completes end to end on the promoted replica.
func TestSentinelFailover(t *testing.T) {
	checkGoroutineLeaks(t)
	bin := needRedisServer(t)
	ctx := context.Background()
	master := startRedis(t, bin, freeAddr(t))
	mHost, mPort, _ := net.SplitHostPort(master.addr)
	replica := startRedis(t, bin, freeAddr(t), "--replicaof", mHost, mPort)

	sentinelAddr := freeAddr(t)
	_, sPort, _ := net.SplitHostPort(sentinelAddr)
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor essc %s %s 1\n"+
		"sentinel down-after-milliseconds essc 1000\nsentinel failover-timeout essc 5000\n", sPort, t.TempDir(), mHost, mPort)), 0o600)
	startRedisArgs(t, bin, sentinelAddr, []string{conf, "--sentinel"}) // sentinel rewrites its config file
	sc := goredis.NewSentinelClient(&goredis.Options{Addr: sentinelAddr})
	defer sc.Close()
	waitUntil(t, 20*time.Second, "the sentinel knows the replica", func() bool {
		rs, err := sc.Replicas(ctx, "essc").Result()
		return err == nil && len(rs) == 1 && !strings.Contains(fmt.Sprint(rs[0]), "disconnected")
	})

	s := newStack(t, "", "", func(c *FileConfig) {
		c.Redis.Addrs, c.Redis.MasterName = []string{sentinelAddr}, "essc"
	})
	number := s.issue(t, "41010519560315201", "S10000001")
	app := s.phone(t, "41010519560315201", number, "258147")
	at := sentinelLogin(t, s, app)

	// Everything written so far is on the replica before the switch.
	mc := goredis.NewClient(&goredis.Options{Addr: master.addr})
	defer mc.Close()
	if n, err := mc.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("replication: %d %v", n, err)
	}
	if err := sc.Failover(ctx, "essc").Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "the replica promoted", func() bool {
		addr, err := sc.GetMasterAddrByName(ctx, "essc").Result()
		return err == nil && net.JoinHostPort(addr[0], addr[1]) == replica.addr
	})
	master.kill(t) // from here on only the promoted replica can answer
	waitUntil(t, 20*time.Second, "/readyz after the failover", func() bool {
		return userinfo(t, s.base+"/readyz", "") == 200
	})
	waitUntil(t, 20*time.Second, "the pre-failover token on the new master", func() bool {
		return userinfo(t, s.base+"/gm/userinfo", at) == 200
	})
	sentinelLogin(t, s, app)
}

// sentinelLogin runs one QR login through the app and returns the access token.
func sentinelLogin(t *testing.T, s *stack, app *client.Client) string {
	t.Helper()
	b := s.browser(t)
	b.authorize(nil)
	v, err := app.Scan(context.Background(), b.payload())
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Confirm(context.Background(), v.Txn, b.number(), "258147"); err != nil {
		t.Fatal(err)
	}
	code, err := b.complete()
	if err != nil {
		t.Fatal(err)
	}
	tok, st := b.exchange(code)
	at, _ := tok["access_token"].(string)
	if st != 200 || at == "" {
		t.Fatalf("exchange: %d %v", st, tok)
	}
	return at
}
