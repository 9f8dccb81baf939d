-- add_call: ARGV prefix, call_id, queue, score, call_json
local call_id, queue, score, call_json = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local old = redis.call('HGET', P .. 'calls', call_id)
if old then
  local old_queue = cjson.decode(old).queue
  if old_queue ~= queue then redis.call('ZREM', P .. 'queue:' .. old_queue, call_id) end
end
redis.call('HSET', P .. 'calls', call_id, call_json)
redis.call('ZADD', P .. 'queue:' .. queue, score, call_id)
publish('call-added', '{"call":' .. call_json .. '}')
return 'ok'
