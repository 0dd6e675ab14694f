#!lua name=jobring
-- jobring's Redis backend: one function library, loaded with
-- FUNCTION LOAD REPLACE by lib/redis/connection.cpp (it is embedded in the
-- C++ library at build time). Redis 7.0 commands only, so that Valkey runs it.
--
-- Why functions: each operation below is one FCALL, and Redis runs a
-- function to its end before it serves any other command, so every
-- operation is atomic against every other client. A client that dies
-- before its FCALL reached the server changed nothing; one that dies after
-- it changed exactly what the function changes, whether or not the reply
-- reached it. Nothing here waits for a client: a dead client's lease ends
-- at its deadline (the next claim, or any sweep, takes it back).
--
-- Time: every function reads the server's clock (TIME, in ms), never a
-- client's, so clients on hosts with skewed clocks agree on deadlines.
-- Since Redis 7 a function's writes are replicated as their effects, so
-- TIME is allowed in a writing function and replicas see the same result.
--
-- Keys of queue NAME. The client passes one key, B = "{jr:NAME}", and every
-- key used is B followed by a suffix: all carry the hash tag {jr:NAME}, so a
-- queue lives in one Cluster slot (the undeclared keys are in the declared
-- key's slot, which is what Cluster checks).
--   B:cfg     hash: capacity max_payload lease max_attempts window inc paused,
--             seq (the last job id), fence (the last fencing token),
--             held (jobs in the queue: pend + lease + dead), pushed,
--             claimed and acked (totals), and waiters / room_waiters (how
--             many markers sleepers may need). The counters that every push,
--             claim and ack changes live here, so that the HMGET each call
--             makes anyway reads them and one HSET writes them.
--   B:st      hash: the other totals (released expired_total dead_lettered
--             requeued purged duplicates)
--   B:pend    zset member -> visible-at ms: ready and delayed jobs
--   B:lease   zset member -> lease deadline ms: claimed jobs
--   B:dead    zset member -> died-at ms
--   B:j:M     hash of job M: p payload, a attempts, f fence of the current
--             lease, o owner, c claimed-at ms, t enqueued-at ms, k key,
--             e error note, d died-at ms
--   B:k:INC:KEY   de-duplication key: the member of the job that holds it;
--             no TTL while its job is in the queue, PX window once it is
--             gone. INC (the incarnation) keeps an old queue's remembered
--             keys from answering for a queue created again under the name.
--   B:wake    list of markers: a blocked claim BLPOPs it (wait markers below)
--   B:room    list of markers: a push waiting for room BLPOPs it
-- A member M is the job id as 16 zero-padded decimal digits, so that jobs
-- with the same score sort by id (FIFO among jobs pushed in the same ms).
-- A job is in exactly one of pend, lease and dead; its hash exists exactly
-- while it is in one of them; its field f is the fence of its lease while
-- it is in lease and 0 otherwise (fences start at 1). Every function keeps
-- this true before it returns, and Redis never shows another client a
-- function half done.
--
-- Wait markers. A claim that finds nothing and will wait adds 1 to
-- B:cfg waiters in the same call (a push that finds the queue full and will
-- wait adds 1 to room_waiters). Whatever makes a job claimable (push,
-- release, requeue, the lease sweep) LPUSHes a marker to B:wake per job, up
-- to `waiters`, and takes them off `waiters`; so does whatever makes the
-- earliest due time (a delayed job's visible-at, a lease's deadline)
-- earlier, because a sleeper sleeps no longer than the earliest due time it
-- saw. A sleeper BLPOPs B:wake. No wake-up is lost: the count is raised in
-- the call that found nothing, so every later change sees it; and a marker
-- stays until popped, so one pushed between the claim and its BLPOP is
-- found. A sleeper that gave up or died leaves the count high: a later
-- marker is then popped by nobody, and the next sleeper pops it for one
-- spurious wake-up (an empty claim). The lists are trimmed to MARKERS and
-- the counts capped to it. ack and the removals do the same with
-- room_waiters and B:room for pushes waiting for room. With no sleepers,
-- no marker is written at all.
-- Fencing: every claim and extend takes a new fence from B:cfg's counter,
-- which only grows, so a fence names one grant of one job for ever. ack,
-- release, give_back and extend change something only if the job's hash
-- holds the fence given (so, by the invariant above, the job is leased
-- under it): else they return 'lost' and change nothing. (The owner is recorded for operators, not checked: a
-- lease may be handed to another process, as the shared-memory queue's.)
--
-- Ids and fences after a failover. A failover to an asynchronous replica
-- loses the primary's last writes, and with them the last increments of
-- seq and fence: counted on from the replica's values, a new primary would
-- give a lost push's id to another job, and a lost claim's fence to the
-- next claim of the same job, whose first holder's ack would then succeed.
-- So both counters are floored by the server's clock in microseconds
-- (next_above): a new id or fence is above the last one and above the time
-- it is given at. A failover takes seconds (cluster-node-timeout, Sentinel's
-- down-after-milliseconds), so what the new primary gives is above what the
-- old one gave, as long as the two servers' clocks agree to better than the
-- failover's length (NTP). Lua numbers are doubles: exact to 2^53, i.e. to
-- the year 2255 in microseconds; members stay 16 digits until 2286.

-- The build writes a hash of this file here (lib/CMakeLists.txt), so that a
-- client replaces a library of any other content: change the file, and
-- every client built from it loads it. (Clients of one server must all run
-- one jobring version: each replaces the others' library.)
local VERSION = 'unversioned'
local MARKERS = 16   -- at most this many wake markers per list
local SWEEP = 64     -- expired leases taken back per call, at most

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function member(id) return string.format('%016d', tonumber(id)) end

-- An integer as Redis stores it (never "1.7e+15": fences are compared as text).
local function int(x) return string.format('%d', x) end

-- The first of n new values of a counter whose last value is `last`: above
-- it, and above the server's clock in microseconds (ids and fences after a
-- failover, above). Returns the first and the last.
local function next_above(last, n)
  local t = redis.call('TIME')
  local first = math.max(last, tonumber(t[1]) * 1000000 + tonumber(t[2])) + 1
  return first, first + n - 1
end

local function config(b)
  local v = redis.call('HMGET', b .. ':cfg', 'capacity', 'max_payload', 'lease', 'max_attempts', 'window',
                       'inc', 'paused', 'waiters', 'room_waiters', 'seq', 'held', 'fence', 'claimed', 'acked')
  if not v[1] then return nil end
  return {capacity = tonumber(v[1]), max_payload = tonumber(v[2]), lease = tonumber(v[3]),
          max_attempts = tonumber(v[4]), window = tonumber(v[5]), inc = v[6], paused = v[7] == '1',
          waiters = tonumber(v[8]) or 0, room_waiters = tonumber(v[9]) or 0, seq = tonumber(v[10]) or 0,
          held = tonumber(v[11]) or 0, fence = tonumber(v[12]) or 0, claimed = tonumber(v[13]) or 0,
          acked = tonumber(v[14]) or 0}
end

-- n jobs left the queue (acked, purged, removed): held - n, acked + n_acked.
local function gone(b, c, n, n_acked)
  if n <= 0 then return end
  c.held = c.held - n
  c.acked = c.acked + n_acked
  redis.call('HSET', b .. ':cfg', 'held', c.held, 'acked', c.acked)
end

-- Pushes n markers to `list` (at most MARKERS), keeping it to MARKERS.
local function signal(list, n)
  if n <= 0 then return end
  if n > MARKERS then n = MARKERS end
  local args = {}
  for i = 1, n do args[i] = '1' end
  redis.call('LPUSH', list, unpack(args))
  redis.call('LTRIM', list, 0, MARKERS - 1)
end

-- Wakes up to n sleeping claims (c.waiters of them are known), or pushes
-- waiting for room (room = true).
local function wake(b, c, n, room)
  local field = room and 'room_waiters' or 'waiters'
  local known = room and c.room_waiters or c.waiters
  if known <= 0 or n <= 0 then return end
  if n > known then n = known end
  signal(b .. (room and ':room' or ':wake'), n)
  redis.call('HSET', b .. ':cfg', field, known - n)
  if room then c.room_waiters = known - n else c.waiters = known - n end
end

-- A caller that found nothing (no job, or no room) and will sleep.
local function will_wait(b, c, room)
  local field = room and 'room_waiters' or 'waiters'
  local known = room and c.room_waiters or c.waiters
  if known < MARKERS then redis.call('HSET', b .. ':cfg', field, known + 1) end
end

local function count(b, field, n)
  if n ~= 0 then redis.call('HINCRBY', b .. ':st', field, n) end
end

local function first_score(key)
  local r = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if r[2] then return tonumber(r[2]) end
  return nil
end

-- The earliest time at which something may become claimable: the first
-- pending job's visible-at or the first lease's deadline; nil if neither.
local function next_due(b)
  local p = first_score(b .. ':pend')
  local l = first_score(b .. ':lease')
  if p and l then return math.min(p, l) end
  return p or l
end

-- Wakes one blocked claim if `at` is earlier than every due time a sleeper
-- can have seen. Call before adding the entry due at `at`.
local function wake_if_earliest(b, c, at)
  if c.waiters <= 0 then return end
  local due = next_due(b)
  if due == nil or at < due then wake(b, c, 1, false) end
end

-- The key table's entry for `key` in this incarnation: the member of the job
-- pushed with it.
local function key_entry(b, c, key) return b .. ':k:' .. c.inc .. ':' .. key end

-- The entry for `key` and, if the key is remembered, the id of its job (a
-- duplicate, counted here; the caller adds nothing and answers that id).
local function remembered(b, c, key)
  local kk = key_entry(b, c, key)
  local existing = redis.call('GET', kk)
  if existing then
    count(b, 'duplicates', 1)
    return kk, tonumber(existing)
  end
  return kk, nil
end

-- The job's key is remembered for the window once the job is gone.
local function forget_key(b, c, m, key)
  if not key or key == '' then return end
  local kk = key_entry(b, c, key)
  if redis.call('GET', kk) ~= m then return end
  if c.window > 0 then redis.call('PEXPIRE', kk, c.window) else redis.call('DEL', kk) end
end

-- Deletes job m (already out of its zset).
local function drop_job(b, c, m)
  local jk = b .. ':j:' .. m
  forget_key(b, c, m, redis.call('HGET', jk, 'k'))
  redis.call('DEL', jk)
end

local function to_dead(b, m, now, note)
  redis.call('ZADD', b .. ':dead', now, m)
  redis.call('HSET', b .. ':j:' .. m, 'e', note, 'd', now, 'f', 0)
end

-- Leases past their deadline go back to pending (visible since their
-- deadline, so they keep their place) or, when their attempts are used up,
-- to dead: a crashed worker's attempt was counted at its claim.
local function sweep(b, c, now)
  local expired = redis.call('ZRANGEBYSCORE', b .. ':lease', '-inf', now, 'WITHSCORES', 'LIMIT', 0, SWEEP)
  local back, dead = 0, 0
  for i = 1, #expired, 2 do
    local m, deadline = expired[i], expired[i + 1]
    redis.call('ZREM', b .. ':lease', m)
    local attempts = tonumber(redis.call('HGET', b .. ':j:' .. m, 'a')) or 0
    if c.max_attempts > 0 and attempts >= c.max_attempts then
      to_dead(b, m, now, 'lease expired after ' .. attempts .. ' attempts')
      dead = dead + 1
    else
      redis.call('HSET', b .. ':j:' .. m, 'f', 0)
      redis.call('ZADD', b .. ':pend', deadline, m)
      back = back + 1
    end
  end
  count(b, 'expired_total', back + dead)
  count(b, 'dead_lettered', dead)
  wake(b, c, back, false)  -- (dead jobs keep their room: no room marker)
  return back, dead
end

local function config_reply(c, created)
  return {'ok', created, c.capacity, c.max_payload, c.lease, c.max_attempts, c.window, c.inc}
end

-- create: B, capacity, max_payload, lease ms, max_attempts, window ms, incarnation
-- Checked by the client (Options' ranges); 'exists' if the queue exists.
local function jr_create(keys, args)
  local b = keys[1]
  if redis.call('EXISTS', b .. ':cfg') == 1 then return {'exists'} end
  redis.call('HSET', b .. ':cfg', 'capacity', args[1], 'max_payload', args[2], 'lease', args[3],
             'max_attempts', args[4], 'window', args[5], 'inc', args[6], 'paused', '0', 'seq', 0, 'fence', 0,
             'held', 0, 'claimed', 0, 'acked', 0)
  return config_reply(config(b), 1)
end

local function jr_open(keys, args)
  local c = config(keys[1])
  if not c then return {'not_found'} end
  return config_reply(c, 0)
end

-- How many more jobs the queue can hold: capacity counts every job in it,
-- dead ones included.
local function room(b, c) return c.capacity - c.held end

-- Adds payloads[first..last] (the caller checked that they fit) as new jobs
-- visible at now + delay, with key `key` ('' = none); returns their ids.
-- Ids come from the counter seq (next_above); `pushed` counts the jobs.
local function insert(b, c, now, delay, payloads, first, last, key)
  local n = last - first + 1
  local base, top = next_above(c.seq, n)
  c.seq, c.held = top, c.held + n
  redis.call('HSET', b .. ':cfg', 'seq', int(c.seq), 'held', c.held)
  redis.call('HINCRBY', b .. ':cfg', 'pushed', n)
  local visible = now + delay
  if delay > 0 then wake_if_earliest(b, c, visible) else wake(b, c, n, false) end  -- before the ZADD
  local zargs, ids = {}, {}
  for i = 0, n - 1 do
    local id = base + i
    local m = member(id)
    redis.call('HSET', b .. ':j:' .. m, 'p', payloads[first + i], 'a', 0, 'f', 0, 't', now, 'k', key)
    zargs[#zargs + 1] = visible
    zargs[#zargs + 1] = m
    ids[#ids + 1] = id
  end
  redis.call('ZADD', b .. ':pend', unpack(zargs))
  return ids
end

-- push: B, delay ms, key ('' = none), payload, will wait (1|0)
--   -> ok id duplicate | full | too_large | not_found
-- A keyed push whose key is remembered adds nothing and answers that job's
-- id (so sending it again after a lost answer is harmless).
local function jr_push(keys, args)
  local b = keys[1]
  local c = config(b)
  if not c then return {'not_found'} end
  local delay, key, payload = tonumber(args[1]), args[2], args[3]
  if #payload > c.max_payload then return {'too_large'} end
  local kk
  if key ~= '' then
    local existing
    kk, existing = remembered(b, c, key)
    if existing then return {'ok', existing, 1} end
  end
  if room(b, c) <= 0 then
    if args[4] == '1' then will_wait(b, c, true) end
    return {'full'}
  end
  local id = insert(b, c, now_ms(), delay, args, 3, 3, key)[1]
  if kk then redis.call('SET', kk, member(id)) end
  return {'ok', id, 0}
end

-- push_many: B, delay ms, will wait (1|0), payload... -> ok n id1..idn
-- (as many as there is room for, in order). The client has checked every
-- payload's size first (nothing is pushed if one is too large); the check
-- here is a second line.
local function jr_push_many(keys, args)
  local b = keys[1]
  local c = config(b)
  if not c then return {'not_found'} end
  for i = 3, #args do
    if #args[i] > c.max_payload then return {'too_large'} end
  end
  local n = math.min(#args - 2, math.max(room(b, c), 0))
  local ids = {}
  if n > 0 then ids = insert(b, c, now_ms(), tonumber(args[1]), args, 3, 2 + n, '') end
  if n < #args - 2 and args[2] == '1' then will_wait(b, c, true) end
  local reply = {'ok', #ids}
  for i = 1, #ids do reply[#reply + 1] = ids[i] end
  return reply
end

-- claim: B, n, lease ms (0 = default), owner, will wait (1|0)
--   -> ok incarnation k {id fence attempts payload key lease_ms}*k
--   -> empty due_in_ms (-1: nothing is due, wait for a marker) | not_found
-- Expired leases are taken back first. Each job taken: out of pend, into
-- lease with deadline now + lease, attempts + 1, a new fence.
local function jr_claim(keys, args)
  local b = keys[1]
  local c = config(b)
  if not c then return {'not_found'} end
  local now = now_ms()
  sweep(b, c, now)
  local n, lease, owner = tonumber(args[1]), tonumber(args[2]), args[3]
  if lease <= 0 then lease = c.lease end
  local ms = {}
  if not c.paused then ms = redis.call('ZRANGEBYSCORE', b .. ':pend', '-inf', now, 'LIMIT', 0, n) end
  if #ms == 0 then
    if args[4] == '1' then will_wait(b, c, false) end
    local due = next_due(b)
    if c.paused or due == nil then return {'empty', -1} end
    return {'empty', math.max(due - now, 1)}
  end
  local deadline = now + lease
  redis.call('ZREM', b .. ':pend', unpack(ms))
  wake_if_earliest(b, c, deadline)  -- after the ZREM (the jobs taken are due now), before the ZADD
  local first_fence, top = next_above(c.fence, #ms)
  c.fence, c.claimed = top, c.claimed + #ms
  redis.call('HSET', b .. ':cfg', 'fence', int(c.fence), 'claimed', c.claimed)
  local reply, zargs = {'ok', c.inc, #ms}, {}
  for i, m in ipairs(ms) do
    local jk = b .. ':j:' .. m
    local fence = first_fence + i - 1
    local v = redis.call('HMGET', jk, 'a', 'p', 'k')
    local attempts = (tonumber(v[1]) or 0) + 1
    redis.call('HSET', jk, 'a', attempts, 'f', int(fence), 'o', owner, 'c', now)
    zargs[#zargs + 1] = deadline
    zargs[#zargs + 1] = m
    for _, x in ipairs({tonumber(m), fence, attempts, v[2], v[3] or '', lease}) do reply[#reply + 1] = x end
  end
  redis.call('ZADD', b .. ':lease', unpack(zargs))
  return reply
end

-- True if job m is leased under `fence` (the whole fencing check).
-- Returns whether job m is leased under `fence` (the whole fencing check),
-- and its de-duplication key.
local function holds(b, m, fence)
  if fence == '0' then return false end
  local v = redis.call('HMGET', b .. ':j:' .. m, 'f', 'k')
  return v[1] == fence, v[2]
end

local function ack_one(b, c, id, fence)
  local m = member(id)
  local held, key = holds(b, m, fence)
  if not held then return false end
  redis.call('ZREM', b .. ':lease', m)
  forget_key(b, c, m, key)
  redis.call('DEL', b .. ':j:' .. m)
  return true
end

-- ack: B, id, fence -> ok | lost
local function jr_ack(keys, args)
  local b = keys[1]
  local c = config(b)
  if not c then return {'lost'} end
  if not ack_one(b, c, args[1], args[2]) then return {'lost'} end
  gone(b, c, 1, 1)
  wake(b, c, 1, true)
  return {'ok'}
end

-- ack_many: B, {id fence}* -> ok {1|0}* (a lease given twice: the second is 0)
local function jr_ack_many(keys, args)
  local b = keys[1]
  local c = config(b)
  local reply, acked, taken, hashes, seen = {'ok'}, 0, {}, {}, {}
  for i = 1, #args, 2 do
    local ok = false
    local m = member(args[i])
    if c ~= nil and not seen[m] then
      local held, key = holds(b, m, args[i + 1])
      if held then
        forget_key(b, c, m, key)
        seen[m] = true
        taken[#taken + 1] = m
        hashes[#hashes + 1] = b .. ':j:' .. m
        ok = true
      end
    end
    if ok then acked = acked + 1 end
    reply[#reply + 1] = ok and 1 or 0
  end
  if acked > 0 then
    redis.call('ZREM', b .. ':lease', unpack(taken))
    redis.call('DEL', unpack(hashes))
    gone(b, c, acked, acked)
    wake(b, c, acked, true)
  end
  return reply
end

-- release: B, id, fence, delay ms, error text, count (1 = counts the attempt,
-- 0 = give_back: the attempt is not counted)  -> ok | lost
-- Back to pending at now + delay, or to dead when the attempts are used up.
local function jr_release(keys, args)
  local b = keys[1]
  local c = config(b)
  if not c then return {'lost'} end
  local m = member(args[1])
  if not holds(b, m, args[2]) then return {'lost'} end
  local now, delay, note, counted = now_ms(), tonumber(args[3]), args[4], args[5] == '1'
  local jk = b .. ':j:' .. m
  redis.call('ZREM', b .. ':lease', m)
  local attempts = tonumber(redis.call('HGET', jk, 'a')) or 0
  if not counted then attempts = math.max(attempts - 1, 0) end
  redis.call('HSET', jk, 'a', attempts, 'f', 0)
  if counted and c.max_attempts > 0 and attempts >= c.max_attempts then
    if note == '' then note = 'released after ' .. attempts .. ' attempts' end
    to_dead(b, m, now, note)
    count(b, 'dead_lettered', 1)
  else
    if delay > 0 then wake_if_earliest(b, c, now + delay) else wake(b, c, 1, false) end
    redis.call('ZADD', b .. ':pend', now + delay, m)
  end
  count(b, 'released', 1)
  return {'ok'}
end

-- extend: B, id, fence, lease ms -> ok new_fence | lost
-- The new deadline is now + lease, earlier or later than the old one.
local function jr_extend(keys, args)
  local b = keys[1]
  local c = config(b)
  if not c then return {'lost'} end
  local m = member(args[1])
  if not holds(b, m, args[2]) then return {'lost'} end
  local deadline = now_ms() + tonumber(args[3])
  local fence = next_above(c.fence, 1)
  redis.call('HSET', b .. ':cfg', 'fence', int(fence))
  redis.call('HSET', b .. ':j:' .. m, 'f', int(fence))
  redis.call('ZREM', b .. ':lease', m)
  wake_if_earliest(b, c, deadline)
  redis.call('ZADD', b .. ':lease', deadline, m)
  return {'ok', fence}
end
