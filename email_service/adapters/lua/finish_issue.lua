-- After a code's mail: mark it sent (if it is still the stored request's) and release the mailing lock.
-- KEYS: the pending record, the mailing lock. ARGV: the request's message id, the lock's holder, '1' if sent.
if ARGV[3] == '1' and redis.call('HGET', KEYS[1], 'message_id') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'mail_sent', '1')
end
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return 1
