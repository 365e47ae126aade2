package redisstore

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Fosite items and QR transactions are one string key each (a short header
// the scripts parse, then the payload). Browser SSO sessions and once-records
// are two keys sharing one hash tag (one slot): a small hash of metadata
// (KEYS[1], Redis's compact listpack encoding) and a string holding the
// payload (KEYS[2] = KEYS[1]..":d"). Every script touches only the keys of
// one record (or one index), so it is Cluster-safe.
// Times are Unix milliseconds from the store clock (ARGV), never Redis TIME,
// so expiry decisions follow Config.Now.

// getRecord returns {meta HGETALL, payload or false} in one command (the
// two-key records: browser SSO sessions).
var getRecord = redis.NewScript(`
return {redis.call('HGETALL', KEYS[1]), redis.call('GET', KEYS[2])}`)

// A fosite item is one string key: "x|i|t|a|" (expiry ms, invalidated
// 0/1, rotated-at ms or 0, hash of the access token issued with a refresh
// token or empty) followed by the encoded request. Put is one SET, a read
// one GET; the two scripts below change the header in place.
const itemHeader = `^(%d+)|([01])|(%d+)|([^|]*)|(.*)$`

// invalidateCode: 0 not found/expired, 2 already invalidated, 1 won.
var invalidateCode = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local x, i, t, a, rest = string.match(v, '` + itemHeader + `')
if not x or tonumber(x) <= tonumber(ARGV[1]) then return 0 end
if i == '1' then return 2 end
redis.call('SET', KEYS[1], x .. '|1|' .. t .. '|' .. a .. '|' .. rest, 'KEEPTTL')
return 1`)

// authPart sets or deletes one part of an authorization-code record
// (codes.go) in place, raising the record's expiry when the part lives
// longer; a create on an absent or expired record starts a new one. ARGV:
// now, the part's expiry ms (empty for a delete), ttl ms, tag, part.
var authPart = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
local x, inv, t, a, body
if cur then x, inv, t, a, body = string.match(cur, '` + itemHeader + `') end
local parts = {}
if x and tonumber(x) > tonumber(ARGV[1]) then
  local i = 1
  while parts and i <= #body do
    local colon = string.find(body, ':', i + 1, true)
    local n = colon and tonumber(string.sub(body, i + 1, colon - 1))
    if not n or n < 0 or colon + n > #body then parts = nil else
      local tag = string.sub(body, i, i)
      parts[tag] = nil
      if n > 0 then parts[tag] = string.sub(body, colon + 1, colon + n) end
      i = colon + 1 + n
    end
  end
  if not parts then return redis.error_reply('malformed authorization-code record') end
elseif ARGV[2] == '' then
  return 0
else
  x, inv, t, a = ARGV[2], '0', '0', ''
end
parts[ARGV[4]] = nil
if ARGV[2] ~= '' then parts[ARGV[4]] = ARGV[5] end
local out = {x, '|', inv, '|', t, '|', a, '|'}
for _, tag in ipairs({'c', 'p', 'o'}) do
  local d = parts[tag]
  if d then out[#out + 1] = tag .. string.len(d) .. ':' .. d end
end
if ARGV[2] ~= '' and tonumber(ARGV[2]) > tonumber(x) then
  out[1] = ARGV[2]
  redis.call('SET', KEYS[1], table.concat(out), 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], table.concat(out), 'KEEPTTL')
end
return 1`)

// rotateRefresh: {0} not found, {3} rotated beyond grace, {2} retry within
// grace (no-op), {1, access key} first rotation.
var rotateRefresh = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return {0, ''} end
local x, i, t, a, rest = string.match(v, '` + itemHeader + `')
if not x or tonumber(x) <= tonumber(ARGV[1]) then return {0, ''} end
if t ~= '0' then
  if tonumber(ARGV[1]) - tonumber(t) >= tonumber(ARGV[2]) then return {3, ''} end
  return {2, ''}
end
redis.call('SET', KEYS[1], x .. '|' .. i .. '|' .. ARGV[1] .. '|' .. a .. '|' .. rest, 'KEEPTTL')
return {1, a}`)

// setIfAbsent (jti, replay): value = expiry ms; 1 stored, 0 live already.
var setIfAbsent = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and tonumber(v) > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`)

// putFields creates a record unless a live one (x > now) exists: 1 stored,
// 0 duplicate. ARGV: now, ttl, payload, meta field/value pairs.
var putFields = redis.NewScript(`
local x = redis.call('HGET', KEYS[1], 'x')
if x and tonumber(x) > tonumber(ARGV[1]) then return 0 end
if x then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
return 1`)

// takeFields returns and deletes a live record: {1, HGETALL, payload} or {0}.
var takeFields = redis.NewScript(`
local f = redis.call('HGETALL', KEYS[1])
local d = redis.call('GET', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
local x = nil
for i = 1, #f, 2 do if f[i] == 'x' then x = f[i+1] end end
if not x or tonumber(x) <= tonumber(ARGV[1]) then return {0} end
return {1, f, d or ''}`)

// qrCreate stores a QR transaction record (ARGV now, ttl, record) unless a
// live one (x > now) exists: 1 stored, 0 duplicate.
var qrCreate = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local x = string.match(cur, '^(%d+)|')
  if x and tonumber(x) > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
return 1`)

// qrCAS moves a QR transaction record "x|v|s|rest" from state ARGV[2] to
// ARGV[3]. ARGV: now, from, to, expected version (” = any), '1' to replace
// x and rest, rest, x, ttl, channel. Returns {0} not found, {2, state}
// state conflict, {3, state} version moved, {1, ”} written (whole record
// sent) or {1, new record}; a success publishes the new record on the
// channel (the watchers' wake-up, which spares them a read) unless it is ”
// (a redemption).
//
// With the whole record sent (a version is then always expected) the
// script swaps it in with one SET … XX GET and checks the record it
// replaced, putting that back (TTL untouched) when the check fails: inside
// the script the two are atomic, and the common case costs one command
// instead of a GET and a SET. The TTL is kept unless the expiry changed.
var qrCAS = redis.NewScript(`
if ARGV[5] == '1' then
  local rec = ARGV[7] .. '|' .. string.format('%d', tonumber(ARGV[4]) + 1) .. '|' .. ARGV[3] .. '|' .. ARGV[6]
  local old = redis.call('SET', KEYS[1], rec, 'XX', 'GET', 'KEEPTTL')
  if not old then return {0, ''} end
  local x, v, s = string.match(old, '^(%d+)|(%d+)|([^|]*)|')
  local res = nil
  if not x or tonumber(x) <= tonumber(ARGV[1]) then res = {0, ''}
  elseif s ~= ARGV[2] then res = {2, s}
  elseif v ~= ARGV[4] then res = {3, s} end
  if res then
    redis.call('SET', KEYS[1], old, 'KEEPTTL')
    return res
  end
  if x ~= ARGV[7] then redis.call('PEXPIRE', KEYS[1], ARGV[8]) end
  if ARGV[9] ~= '' then redis.call('PUBLISH', ARGV[9], rec) end
  return {1, ''}
end
local cur = redis.call('GET', KEYS[1])
if not cur then return {0, ''} end
local x, v, s, rest = string.match(cur, '^(%d+)|(%d+)|([^|]*)|(.*)$')
if not x or tonumber(x) <= tonumber(ARGV[1]) then return {0, ''} end
if s ~= ARGV[2] then return {2, s} end
if ARGV[4] ~= '' and v ~= ARGV[4] then return {3, s} end
local rec = x .. '|' .. string.format('%d', tonumber(v) + 1) .. '|' .. ARGV[3] .. '|' .. rest
redis.call('SET', KEYS[1], rec, 'KEEPTTL')
if ARGV[9] ~= '' then redis.call('PUBLISH', ARGV[9], rec) end
return {1, rec}`)

var allScripts = []*redis.Script{getRecord, invalidateCode, authPart, rotateRefresh, setIfAbsent, putFields, takeFields, qrCreate, qrCAS}

func loadScripts(ctx context.Context, c redis.UniversalClient) error {
	for _, sc := range allScripts {
		if err := sc.Load(ctx, c).Err(); err != nil {
			return err
		}
	}
	return nil
}
