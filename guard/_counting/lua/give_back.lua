-- Units of a lease never spent, taken off the counters again: KEYS[i] (i <= n) is the
-- counter of limit i; ARGV[2i-1] is the units to return to counter i and ARGV[2i] the
-- server time (ms) its window ends, as the lease was told. (The process stays among
-- the key's holders until that ages out: its share is too small a while, never large.)
--
-- A counter whose window ended since is another window now (or none): returning units
-- there would let that window admit more than its limit, so only a counter still in
-- the lease's window (ending within half a second of that time; the next window ends
-- at least a second later) takes its units back.
local n = #KEYS
local clock = redis.call("TIME")
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
for i = 1, n do
    local key = KEYS[i]
    local units = tonumber(ARGV[2 * i - 1])
    local ttl = redis.call("PTTL", key)
    if units > 0 and ttl > 0 and math.abs(now + ttl - tonumber(ARGV[2 * i])) < 500 then
        local count = tonumber(redis.call("GET", key) or "0")
        if count > 0 then
            redis.call("INCRBY", key, -math.min(units, count))
        end
    end
end
return 1
