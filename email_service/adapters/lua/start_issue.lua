-- Before a code's mail: take the slot's mailing lock, drop a request already mailed, an older request, or one
-- over the quota, and store the code. One atomic round trip (RedisPendingCodes.start_issue).
--
-- KEYS: the mailing lock, the pending record, the quota's sorted set of requests, the spent request.
-- ARGV[1], JSON: holder, hold_ms, message_id, sequence, now, per_hour, per_day, ttl, voids_over_quota (a
-- registration over the quota voids the live code all the same), record (the fields to store, with the
-- code), voided_record (those of a void record, without).
-- Returns one of 'locked', 'sent', 'outdated', 'over_quota', 'stored' (ports.IssueStart).
local a = cjson.decode(ARGV[1])
local function release()
  if redis.call('GET', KEYS[1]) == a.holder then redis.call('DEL', KEYS[1]) end
end
local function store(fields)
  redis.call('DEL', KEYS[2])
  for name, value in pairs(fields) do redis.call('HSET', KEYS[2], name, value) end
  redis.call('EXPIRE', KEYS[2], a.ttl)
end
if not redis.call('SET', KEYS[1], a.holder, 'NX', 'PX', a.hold_ms) and redis.call('GET', KEYS[1]) ~= a.holder then
  return 'locked'
end
local current = redis.call('HMGET', KEYS[2], 'user_id', 'message_id', 'voided', 'mail_sent', 'sequence')
local exists = current[1] ~= false
local same = exists and current[2] == a.message_id and current[3] ~= '1'
-- Its code was mailed and spent since (the worker lost the message before its ack): never again.
if not exists and redis.call('GET', KEYS[4]) == a.message_id then release() return 'sent' end
if same and current[4] == '1' then release() return 'sent' end
-- The newer request wins: an older one never replaces it. Equal numbers (two requests placed by the same
-- microsecond) are as new as each other: the later one wins.
if exists and tonumber(a.sequence) < tonumber(current[5] or '0') then release() return 'outdated' end
local now = tonumber(a.now)
if not redis.call('ZSCORE', KEYS[3], a.message_id) then
  local last_hour = redis.call('ZCOUNT', KEYS[3], now - 3600, '+inf')
  local last_day = redis.call('ZCOUNT', KEYS[3], now - 86400, '+inf')
  -- Over the quota: nothing mailed. A registration voids the earlier codes all the same (the contract:
  -- registering again voids them); for every other purpose the live code is left as it is, since a request
  -- anyone can make by address (forgot, sign-in) must not void the code its owner holds.
  if last_hour >= a.per_hour or last_day >= a.per_day then
    if a.voids_over_quota then store(a.voided_record) end
    release()
    return 'over_quota'
  end
  redis.call('ZADD', KEYS[3], now, a.message_id)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 86400)
  redis.call('EXPIRE', KEYS[3], 86400)
end
if not same then store(a.record) end
return 'stored'
