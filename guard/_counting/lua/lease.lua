-- A quota lease for one key: KEYS[i] (i <= n) is the counter of the key's limit i,
-- KEYS[n+1] the set of processes that took a lease for the key lately. ARGV[1] names the
-- process, ARGV[2] is k, ARGV[3] how long (s) a process counts as taking leases;
-- ARGV[2i+2] is limit i's window in seconds, ARGV[2i+3] its amount.
--
-- The grant is at most what every window has left (never over a limit): the smallest
-- remainder divided by k times the processes seen lately, never below one unit while
-- any is left. It is added to every counter, as hits are, so the counters stay what
-- the limits read. Reply: the grant, the server's time (ms), then for each limit its
-- count and the milliseconds left in its window.
local n = #KEYS - 1
local clock = redis.call("TIME")
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local holders = KEYS[n + 1]
local horizon = tonumber(ARGV[3])
redis.call("ZADD", holders, now, ARGV[1])
redis.call("ZREMRANGEBYSCORE", holders, "-inf", now - horizon * 1000)
redis.call("EXPIRE", holders, horizon)
local share = tonumber(ARGV[2]) * redis.call("ZCARD", holders)
local left = nil
for i = 1, n do
    local count = tonumber(redis.call("GET", KEYS[i]) or "0")
    local room = tonumber(ARGV[2 * i + 3]) - count
    if left == nil or room < left then
        left = room
    end
end
local grant = 0
if left > 0 then
    grant = math.max(1, math.floor(left / share))
end
local reply = { grant, now }
for i = 1, n do
    local key = KEYS[i]
    local count
    if grant > 0 then
        count = redis.call("INCRBY", key, grant)
        if count == grant then
            redis.call("EXPIRE", key, ARGV[2 * i + 2])
        end
    else
        count = tonumber(redis.call("GET", key) or "0")
    end
    local ttl = redis.call("PTTL", key)
    if ttl < 0 then
        -- No window open (nothing counted yet): a whole window is the honest reset.
        ttl = tonumber(ARGV[2 * i + 2]) * 1000
    end
    reply[2 * i + 1] = count
    reply[2 * i + 2] = ttl
end
return reply
