-- confirm: ARGV prefix, call_id, agent, on_call_state -> 'ok', or why not
local call_id, agent, on_call = ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
reap(now)
local key = P .. 'agent:' .. agent
local state, current = unpack(redis.call('HMGET', key, 'state', 'call_id'))
if not state then return 'unknown agent' end
local call_json = redis.call('HGET', P .. 'calls', call_id)
if not call_json then
  if state == on_call and current == call_id then return 'ok' end  -- confirmed already
  return 'no such call'
end
local info_json = redis.call('HGET', P .. 'reservations', call_id)
if info_json then
  if cjson.decode(info_json).agent ~= agent then return 'call reserved for another agent' end
  drop(call_id, info_json)
elseif redis.call('EXISTS', P .. 'lock:agent:' .. agent) == 1 then
  return 'agent reserved for another call'
end
-- Held, or lapsed with neither side taken since: the phone answered, so it stands.
local call = cjson.decode(call_json)
redis.call('ZREM', P .. 'queue:' .. call.queue, call_id)
redis.call('HDEL', P .. 'calls', call_id)
redis.call('HSET', key, 'state', on_call, 'call_id', call_id, 'since', seconds(now),
  'call_node', call.node)
redis.call('HDEL', key, 'reason')
local f = redis.call('HMGET', key, 'node')
local record = '{"agent":' .. cjson.encode(agent) .. ',"state":' .. cjson.encode(on_call)
  .. ',"reason":null,"since":' .. seconds(now) .. ',"node":' .. json_or_null(f[1])
  .. ',"call_id":' .. cjson.encode(call_id) .. ',"call_node":' .. cjson.encode(call.node) .. '}'
publish('confirmed', '{"call_id":' .. cjson.encode(call_id) .. ',"agent":' .. cjson.encode(agent)
  .. ',"record":' .. record .. '}')
return 'ok'
