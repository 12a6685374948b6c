//! The Lua scripts behind the operations Redis has no single command for. Each runs
//! atomically on the server; `redis::Script` sends it by SHA1 (`EVALSHA`) and loads it on
//! a `NOSCRIPT` miss.

use redis::Script;

/// `KEYS[1]` = key, `ARGV[1]` = value: deletes the key only if it holds the value.
/// Returns 1 if deleted, else 0.
const DELETE_IF: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
";

/// `KEYS[1]` = counter, `ARGV[1]` = window in ms: increments and, if the counter has no
/// expiry (the first increment of a window), makes the window expire. Returns the count.
const INCR_WINDOW: &str = r"
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
";

/// `KEYS[1]` = stream, `ARGV` = group, consumer, min idle ms, count. Claims (XAUTOCLAIM,
/// following its cursor until the group's pending list is scanned or `count` entries are
/// claimed) and returns `{id, payload, deliveries}` for each claimed entry, the delivery
/// count read back with XPENDING — XAUTOCLAIM increments it but does not return it.
/// Entries trimmed while pending come back from XAUTOCLAIM without fields (Redis 6.2) or
/// in its list of deleted ids (7.0+, which also drops them from the pending list); they
/// are skipped.
const CLAIM: &str = r"
local want = tonumber(ARGV[4])
local out = {}
local cursor = '0-0'
repeat
    local reply = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor,
        'COUNT', want - #out)
    cursor = reply[1]
    for _, entry in ipairs(reply[2]) do
        local fields = entry[2]
        if fields then
            local payload = false
            for i = 1, #fields, 2 do
                if fields[i] == 'p' then payload = fields[i + 1] end
            end
            if payload then
                local info = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
                out[#out + 1] = {entry[1], payload, info[1][4]}
            end
        end
    end
until cursor == '0-0' or #out >= want
return out
";

/// The compiled-in scripts.
#[derive(Debug, Clone)]
pub(super) struct Scripts {
    pub(super) delete_if: Script,
    pub(super) incr_window: Script,
    pub(super) claim: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            delete_if: Script::new(DELETE_IF),
            incr_window: Script::new(INCR_WINDOW),
            claim: Script::new(CLAIM),
        }
    }
}
