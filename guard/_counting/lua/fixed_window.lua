-- One round trip for a hit on each of a key's fixed windows, and on its quotas: KEYS[i]
-- is the counter of limit i, ARGV[3i-2] its window (s), ARGV[3i-1] its limit, ARGV[3i]
-- 0 for a rate window (every hit counts 1 there) or, for a quota, the cost this hit
-- spends (its counter lives ARGV[3i-2] seconds, a period, from its first spend).
-- Each counter starts its window's expiry on its first hit. A quota is spent only when
-- every window is within its limit and every quota has room for its cost, all of them
-- or none: a refused request spends no quota, and none is ever overspent. The reply is
-- 1 if the hit was admitted (else 0), then for each limit in order the count and the
-- milliseconds left in its window.
local counts = {}
local admitted = true
for i, key in ipairs(KEYS) do
    local cost = tonumber(ARGV[3 * i])
    local count
    if cost == 0 then
        count = redis.call("INCRBY", key, 1)
        if count == 1 then
            redis.call("EXPIRE", key, ARGV[3 * i - 2])
        end
    else
        count = tonumber(redis.call("GET", key) or "0")
    end
    counts[i] = count
    admitted = admitted and count + cost <= tonumber(ARGV[3 * i - 1])
end
local reply = { admitted and 1 or 0 }
for i, key in ipairs(KEYS) do
    local cost = tonumber(ARGV[3 * i])
    if admitted and cost > 0 then
        counts[i] = redis.call("INCRBY", key, cost)
        if counts[i] == cost then
            redis.call("EXPIRE", key, ARGV[3 * i - 2])
        end
    end
    reply[2 * i] = counts[i]
    reply[2 * i + 1] = redis.call("PTTL", key)
end
return reply
