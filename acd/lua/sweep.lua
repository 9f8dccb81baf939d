-- sweep: ARGV prefix -> {now_ms, next deadline in ms or false}
-- Announces expired reservations when nothing else would: every node calls
-- it at the next deadline it knows of, and now and then.
local now = now_ms()
reap(now)
local first = redis.call('ZRANGE', P .. 'deadlines', 0, 0, 'WITHSCORES')
if #first == 0 then return {now, false} end
return {now, tonumber(first[2])}
