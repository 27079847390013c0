-- One guess at a code (or a link), judged in one atomic round trip: read the record, reach the verdict,
-- write what it spends, return it (RedisPendingCodes.attempt).
--
-- The verdict rules are judge_attempt's (email_service/domain/codes.py), their spec; this script runs the
-- same rules inside Redis. Change both together: tests/unit/test_judge_script.py runs every branch of both
-- and compares them. The record is read as _parse reads it (a missing field is its default). A verdict that
-- spends or burns the code is written with the verdict under the guess's seen field, at once (a
-- redelivered guess gets the same verdict and spends nothing more); an expired code writes nothing. Times
-- compare as numbers: tonumber on Python's repr(float) gives back the same double. Digests compare with
-- ==, not in constant time: compare_digest keeps a client from timing the comparison, and no timing from
-- inside Redis reaches a client across the queue.
--
-- KEYS: the pending record.
-- ARGV[1], JSON: seen (the guess's field), proof ('code' or 'link'), presented (its digest), max_attempts,
-- submitted_at ('' when the submission has none), attempt_id, decoys (the purpose answers a slot without a
-- live code as if it had one), ttl (the code's), budget (the account's daily wrong guesses, '' for none),
-- proven (from a proven device), now, budget_prefix (the account id completes the key: the account is known
-- only once the record is read, here).
-- Returns {verdict, attempts_left, user_id or nil, sequence or nil}.
local a = cjson.decode(ARGV[1])
local record = redis.call('HMGET', KEYS[1], a.seen, 'user_id', 'consumed_by', 'voided', 'requested_at',
  'code_digest', 'attempts', 'link_digest', 'sequence', 'decoy_attempts')

local function value(v)
  if v == nil or v == cjson.null then return false end
  return v
end
if record[1] then
  local seen = cjson.decode(record[1])
  -- A verdict stored before verdicts were arrays: {"verdict": ..., "attempts_left": ..., ...}.
  if seen.verdict then
    local sequence = value(seen.sequence)
    if sequence then sequence = string.format('%d', sequence) end
    return {seen.verdict, seen.attempts_left, value(seen.user_id), sequence}
  end
  return {seen[1], seen[2], value(seen[3]), value(seen[4])}
end

local user_id, consumed_by, voided, requested_at = record[2], record[3], record[4] == '1', record[5] or '0'
local code_digest, attempts, link_digest, sequence = record[6] or '', tonumber(record[7] or '0'), record[8] or '',
  record[9] or '0'
local decoy_attempts = tonumber(record[10] or '0')
local max_attempts, now = a.max_attempts, tonumber(a.now)

local function judged(verdict, attempts_left, user, seq)
  return {verdict, attempts_left, user or false, seq or false}
end
local expired = judged('code_expired', 0)
-- The guess's verdict under its seen field (a redelivery returns it), with what it spends, in one write.
local function written(verdict, ...)
  redis.call('HSET', KEYS[1], a.seen, cjson.encode(verdict), ...)
  return verdict
end
local function verified() return written(judged('verified', 0, user_id, sequence), 'consumed_by', a.attempt_id) end
-- Burned: even the right code is refused from now on.
local function too_many()
  return written(judged('too_many_attempts', 0), 'attempts', string.format('%d', max_attempts), 'code_digest', '')
end
-- No live code, for a purpose asked for by address alone: answered as a live code would be, counting down.
local function decoyed()
  local left = max_attempts - decoy_attempts - 1
  local verdict = left <= 0 and judged('too_many_attempts', 0) or judged('invalid_code', left)
  written(verdict, 'decoy_attempts', string.format('%d', decoy_attempts + 1))
  if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], a.ttl) end
  return verdict
end
-- The account's wrong codes of the last day, over every purpose (a sorted set of guesses by time).
local budget = a.budget_prefix .. (user_id or '')
local function spent() return redis.call('ZCOUNT', budget, now - 86400, '+inf') end
local function charged()
  if a.budget == '' then return end
  redis.call('ZADD', budget, now, a.attempt_id)
  redis.call('ZREMRANGEBYSCORE', budget, '-inf', now - 86400)
  redis.call('EXPIRE', budget, 86400)
end

if not user_id or consumed_by or voided then
  if a.decoys and a.proof == 'code' then return decoyed() end
  return expired
end
if a.submitted_at ~= '' and tonumber(a.submitted_at) < tonumber(requested_at) then return expired end
if code_digest == '' or attempts >= max_attempts then return too_many() end
if a.proof == 'link' then
  -- A link that does not match is an older code's (its token is too long to guess): nothing spent.
  if link_digest ~= '' and link_digest == a.presented then return verified() end
  return expired
end
-- The day's budget spent: refused, right or wrong, and nothing of the code spent.
if a.budget ~= '' and not a.proven and spent() >= a.budget then
  return written(judged('too_many_attempts', 0))
end
if code_digest == a.presented then return verified() end
charged()
local attempts_left = max_attempts - attempts - 1
if attempts_left <= 0 then return too_many() end
return written(judged('invalid_code', attempts_left), 'attempts', string.format('%d', attempts + 1))
