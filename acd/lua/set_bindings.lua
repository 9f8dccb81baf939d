-- set_bindings: ARGV prefix, aor, node, contact, binding_json, contact, binding_json, ...
-- Replaces the contacts this node holds for the AOR, keeps other nodes' ones,
-- and lets the hash expire with its longest-lived binding.
local aor, node = ARGV[2], ARGV[3]
local key = P .. 'loc:' .. aor
local mine = node .. '\n'
for _, field in ipairs(redis.call('HKEYS', key)) do
  if string.sub(field, 1, #mine) == mine then redis.call('HDEL', key, field) end
end
for i = 4, #ARGV, 2 do redis.call('HSET', key, mine .. ARGV[i], ARGV[i + 1]) end
-- Which AORs each node holds, for clearing a lost node's registrations.
if #ARGV >= 4 then
  redis.call('SADD', P .. 'aors:' .. node, aor)
else
  redis.call('SREM', P .. 'aors:' .. node, aor)
end
local last = 0
for _, value in ipairs(redis.call('HVALS', key)) do
  local expires = math.ceil(tonumber(cjson.decode(value).expires_at) * 1000)
  if expires > last then last = expires end
end
if last > 0 then redis.call('PEXPIREAT', key, last) end
publish('binding', '{"aor":' .. cjson.encode(aor) .. ',"node":' .. cjson.encode(node) .. '}')
return 'ok'
