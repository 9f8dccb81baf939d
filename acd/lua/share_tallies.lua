-- share_tallies: ARGV prefix, node, ttl_ms, tallies_json -> {node, tallies_json, ...}
-- Each node's rolling-window tallies per queue live in `tallies:<node>` for
-- one heartbeat ttl: a node that stops beating stops counting.
local node, ttl, tallies = ARGV[2], tonumber(ARGV[3]), ARGV[4]
redis.call('SET', P .. 'tallies:' .. node, tallies, 'PX', ttl)
local out = {}
for _, name in ipairs(redis.call('ZRANGE', P .. 'nodes', 0, -1)) do
  local held = redis.call('GET', P .. 'tallies:' .. name)
  if held then
    out[#out + 1] = name
    out[#out + 1] = held
  end
end
return out
