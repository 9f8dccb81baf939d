-- read: ARGV prefix, what ('calls' | 'agents' | 'reservations' | 'snapshot'), queue or ''
-- -> {calls, agents, reservations}, each a list (agents as flat field lists),
-- read in one step so a view built from them is consistent.
local what, queue = ARGV[2], ARGV[3]
local calls, agents, reservations = {}, {}, {}
if what == 'calls' and queue ~= '' then
  for _, id in ipairs(redis.call('ZRANGE', P .. 'queue:' .. queue, 0, -1)) do
    calls[#calls + 1] = redis.call('HGET', P .. 'calls', id)
  end
  return {calls, agents, reservations}
end
if what == 'calls' or what == 'snapshot' then calls = redis.call('HVALS', P .. 'calls') end
if what == 'agents' or what == 'snapshot' then
  for _, name in ipairs(redis.call('SMEMBERS', P .. 'agents')) do
    agents[#agents + 1] = redis.call('HGETALL', P .. 'agent:' .. name)
  end
end
if what == 'reservations' or what == 'snapshot' then
  reap(now_ms())
  reservations = redis.call('HVALS', P .. 'reservations')
end
return {calls, agents, reservations}
