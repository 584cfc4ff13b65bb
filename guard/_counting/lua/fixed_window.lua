-- One round trip for a fixed-window hit on each of a key's limits: KEYS[i] is the
-- counter of limit i, ARGV[2i-1] its window in seconds, ARGV[2i] the amount to add.
-- Each counter starts its window's expiry on its first hit; the reply is, for each
-- limit in order, the count and the milliseconds left in its window.
local reply = {}
for i, key in ipairs(KEYS) do
    local amount = tonumber(ARGV[2 * i])
    local count = redis.call("INCRBY", key, amount)
    if count == amount then
        redis.call("EXPIRE", key, ARGV[2 * i - 1])
    end
    reply[2 * i - 1] = count
    reply[2 * i] = redis.call("PTTL", key)
end
return reply
