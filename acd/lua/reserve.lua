-- reserve: ARGV prefix, call_id, agent, node, ttl_ms, token, available_state
-- -> 'ok', or why not. The checks and both locks are one atomic step: this is
-- what keeps two nodes from offering one call twice or one agent two calls.
local call_id, agent, node = ARGV[2], ARGV[3], ARGV[4]
local ttl, token, available = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local now = now_ms()
reap(now)
local call_lock = P .. 'lock:call:' .. call_id
local held = redis.call('GET', call_lock)
if held == token then return 'ok' end  -- the client's retry of a reserve that succeeded
if held then return 'call already reserved' end
if redis.call('HEXISTS', P .. 'calls', call_id) == 0 then return 'no such call' end
local agent_lock = P .. 'lock:agent:' .. agent
if redis.call('EXISTS', agent_lock) == 1 then return 'agent already reserved' end
local state = redis.call('HGET', P .. 'agent:' .. agent, 'state')
if not state then return 'unknown agent' end
if state ~= available then return 'agent ' .. state end
local deadline = now + ttl
redis.call('SET', call_lock, token, 'PXAT', deadline)
redis.call('SET', agent_lock, token, 'PXAT', deadline)
local public = '{"call_id":' .. cjson.encode(call_id) .. ',"agent":' .. cjson.encode(agent)
  .. ',"node":' .. cjson.encode(node) .. ',"expires_at":' .. seconds(deadline)
redis.call('HSET', P .. 'reservations', call_id, public .. ',"token":' .. cjson.encode(token) .. '}')
redis.call('ZADD', P .. 'deadlines', deadline, call_id)
publish('reserved', '{"reservation":' .. public .. '}}')
return 'ok'
