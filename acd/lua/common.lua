-- Prelude of every live-state script (acd/state_redis.py joins it in front).
--
-- ARGV[1] is the key prefix; key names are built here from it. Every key of
-- one deployment starts with that prefix, so a single Redis (or a primary with
-- replicas) is what these scripts need.
--
-- Reservations: `lock:call:<id>` and `lock:agent:<name>` hold a token and
-- expire at the deadline (PXAT); the `reservations` hash (call id -> JSON with
-- the token) and the `deadlines` sorted set index them for listing and for the
-- expiry notice. `reap` runs first in every script that reads or writes
-- reservations, so the index never shows a reservation whose locks are gone.

local P = ARGV[1]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Seconds with milliseconds, exact in JSON and in Python's float().
local function seconds(ms)
  return string.format('%d.%03d', math.floor(ms / 1000), ms % 1000)
end

-- After the write it announces, inside the same script: subscribers see
-- changes in commit order, and no committed change goes unannounced.
local function publish(kind, data_json)
  redis.call('PUBLISH', P .. 'changes', '{"kind":"' .. kind .. '","data":' .. data_json .. '}')
end

local function json_or_null(value)
  if value then return cjson.encode(value) end
  return 'null'
end

-- Forget one reservation: its index entries and the locks that still carry its token.
local function drop(call_id, info_json)
  local info = cjson.decode(info_json)
  redis.call('HDEL', P .. 'reservations', call_id)
  redis.call('ZREM', P .. 'deadlines', call_id)
  local call_lock = P .. 'lock:call:' .. call_id
  if redis.call('GET', call_lock) == info.token then redis.call('DEL', call_lock) end
  local agent_lock = P .. 'lock:agent:' .. info.agent
  if redis.call('GET', agent_lock) == info.token then redis.call('DEL', agent_lock) end
  return info
end

-- Drop every reservation whose deadline has passed and announce it. The locks
-- expire at the same PXAT deadline; TIME is never behind the clock Redis
-- expires keys by, so a lock Redis already expired is always reaped here.
local function reap(now)
  local due = redis.call('ZRANGEBYSCORE', P .. 'deadlines', '-inf', now)
  for _, call_id in ipairs(due) do
    local info_json = redis.call('HGET', P .. 'reservations', call_id)
    if info_json then
      local info = drop(call_id, info_json)
      publish('released', '{"call_id":' .. cjson.encode(call_id) .. ',"agent":'
        .. cjson.encode(info.agent) .. ',"reason":"expired","record":null}')
    else
      redis.call('ZREM', P .. 'deadlines', call_id)
    end
  end
end

-- Replace an agent's hash with ARGV[first..] (field, value pairs).
local function write_agent(agent, first)
  local key = P .. 'agent:' .. agent
  redis.call('DEL', key)
  if #ARGV >= first then redis.call('HSET', key, unpack(ARGV, first)) end
  redis.call('SADD', P .. 'agents', agent)
end


-- Clear what node `dead` owned, announcing each change. Its queued calls go
-- (their callers went with it; an agent reserved for one is freed); agents
-- whose call it held become `not_ready` "node lost". `whole` (its heartbeat
-- lapsed, it is not coming back): agents logged in at it become
-- `logged_out` "node lost" unless another node holds their call, and its
-- registrations leave the location service.
local function bury(dead, now, whole, logged_out, not_ready)
  for _, call_json in ipairs(redis.call('HVALS', P .. 'calls')) do
    local c = cjson.decode(call_json)
    if c.node == dead then
      redis.call('ZREM', P .. 'queue:' .. c.queue, c.call_id)
      redis.call('HDEL', P .. 'calls', c.call_id)
      local agent = nil
      local info_json = redis.call('HGET', P .. 'reservations', c.call_id)
      if info_json then agent = drop(c.call_id, info_json).agent end
      publish('call-removed', '{"call":' .. call_json .. ',"agent":' .. json_or_null(agent) .. '}')
    end
  end
  for _, name in ipairs(redis.call('SMEMBERS', P .. 'agents')) do
    local key = P .. 'agent:' .. name
    local home, via = unpack(redis.call('HMGET', key, 'node', 'call_node'))
    local state = nil
    if via == dead then
      state = not_ready
      if whole and home == dead then state = logged_out end
    elseif whole and home == dead and not via then
      state = logged_out
    end
    if state then
      redis.call('DEL', key)
      redis.call('HSET', key, 'agent', name, 'state', state, 'reason', 'node lost',
        'since', seconds(now))
      if home then redis.call('HSET', key, 'node', home) end
      publish('agent', '{"record":{"agent":' .. cjson.encode(name) .. ',"state":'
        .. cjson.encode(state) .. ',"reason":"node lost","since":' .. seconds(now)
        .. ',"node":' .. json_or_null(home) .. ',"call_id":null,"call_node":null}}')
    end
  end
  if whole then
    local index = P .. 'aors:' .. dead
    local mine = dead .. '\n'
    for _, aor in ipairs(redis.call('SMEMBERS', index)) do
      local key = P .. 'loc:' .. aor
      for _, field in ipairs(redis.call('HKEYS', key)) do
        if string.sub(field, 1, #mine) == mine then redis.call('HDEL', key, field) end
      end
      publish('binding', '{"aor":' .. cjson.encode(aor) .. ',"node":' .. cjson.encode(dead) .. '}')
    end
    redis.call('DEL', index)
  end
end
