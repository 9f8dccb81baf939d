-- heartbeat: ARGV prefix, node, ttl_ms, restart ('1' or '0'), logged_out, not_ready
-- -> {known (1 or 0), {lost node, ...}}
-- `nodes` scores each node by its heartbeat deadline (server time, ms). A
-- node past its deadline is taken out and cleared by whichever beat finds it
-- first, in this one atomic step, so it is cleared once.
local node, ttl, restart = ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local logged_out, not_ready = ARGV[5], ARGV[6]
local now = now_ms()
reap(now)
local score = redis.call('ZSCORE', P .. 'nodes', node)
local known = score and tonumber(score) > now
if restart then bury(node, now, false, logged_out, not_ready) end
-- Only a node whose own heartbeat held clears others: after an outage of
-- Redis itself every deadline has passed, and the first beat back must not
-- take the other nodes for dead (they beat again within one interval).
local lost = {}
if known then
  for _, dead in ipairs(redis.call('ZRANGEBYSCORE', P .. 'nodes', '-inf', now)) do
    if dead ~= node then
      redis.call('ZREM', P .. 'nodes', dead)
      bury(dead, now, true, logged_out, not_ready)
      publish('node-lost', '{"node":' .. cjson.encode(dead) .. '}')
      lost[#lost + 1] = dead
    end
  end
end
redis.call('ZADD', P .. 'nodes', now + ttl, node)
if known then return {1, lost} end
return {0, lost}
