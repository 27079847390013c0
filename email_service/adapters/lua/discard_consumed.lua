-- Drop a record its submission spent, remembering the spent code's request, so that a redelivery of that
-- request does not store and mail the code again.
-- KEYS: the pending record, the spent request. ARGV: the submission that spent the code, how long to remember.
if redis.call('HGET', KEYS[1], 'consumed_by') == ARGV[1] then
  local request = redis.call('HGET', KEYS[1], 'message_id')
  if request then redis.call('SET', KEYS[2], request, 'EX', ARGV[2]) end
  redis.call('DEL', KEYS[1])
end
return 1
