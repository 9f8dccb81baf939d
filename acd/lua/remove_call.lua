-- remove_call: ARGV prefix, call_id -> the call's JSON, or nil when not queued
local call_id = ARGV[2]
reap(now_ms())
local call_json = redis.call('HGET', P .. 'calls', call_id)
if not call_json then return false end
redis.call('ZREM', P .. 'queue:' .. cjson.decode(call_json).queue, call_id)
redis.call('HDEL', P .. 'calls', call_id)
local agent = nil
local info_json = redis.call('HGET', P .. 'reservations', call_id)
if info_json then agent = drop(call_id, info_json).agent end
publish('call-removed', '{"call":' .. call_json .. ',"agent":' .. json_or_null(agent) .. '}')
return call_json
