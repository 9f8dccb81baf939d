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

