-- set_agent: ARGV prefix, agent, record_json, field, value, ...
local agent, record_json = ARGV[2], ARGV[3]
write_agent(agent, 4)
publish('agent', '{"record":' .. record_json .. '}')
return 'ok'
