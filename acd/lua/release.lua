-- release: ARGV prefix, call_id, agent, record_json or '', field, value, ...
-- -> 'ok', or why not. The call stays queued; the record, if any, is written
-- in the same step so nobody reserves the agent in between.
local call_id, agent, record_json = ARGV[2], ARGV[3], ARGV[4]
reap(now_ms())
local info_json = redis.call('HGET', P .. 'reservations', call_id)
if not info_json then return 'not reserved' end
if cjson.decode(info_json).agent ~= agent then return 'reserved for another agent' end
drop(call_id, info_json)
if record_json ~= '' then write_agent(agent, 5) else record_json = 'null' end
publish('released', '{"call_id":' .. cjson.encode(call_id) .. ',"agent":' .. cjson.encode(agent)
  .. ',"reason":"released","record":' .. record_json .. '}')
return 'ok'
