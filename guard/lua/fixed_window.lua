-- One round trip for a fixed-window hit: count it, start the window's expiry on the
-- first hit, and return the count with the milliseconds left in the window.
local count = redis.call("INCRBY", KEYS[1], ARGV[2])
if count == tonumber(ARGV[2]) then
    redis.call("EXPIRE", KEYS[1], ARGV[1])
end
return {count, redis.call("PTTL", KEYS[1])}
