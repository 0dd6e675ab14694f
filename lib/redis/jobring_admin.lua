-- jobring's Redis backend, part 2 of the function library: the operators'
-- functions (stats, peek, requeue, remove, move, purge, sweep, pause) and
-- the registration of every function. lib/CMakeLists.txt appends this file
-- to jobring.lua (part 1: the keys, the states, the crash analysis and the
-- producers' and workers' functions) and loads the two as one library, so
-- every local of part 1 is in scope here. Read part 1's header first.

local STAT_FIELDS = {'pushed', 'claimed', 'acked', 'released', 'expired_total', 'dead_lettered', 'requeued',
                     'purged', 'duplicates'}

-- stats: B -> ok ready delayed leased expired dead oldest_lease_ms oldest_ready_ms paused, then
-- STAT_FIELDS in order. Reads only (no-writes: FCALL_RO can run it on a replica).
local function jr_stats(keys, args)
  local b = keys[1]
  if redis.call('EXISTS', b .. ':cfg') == 0 then return {'not_found'} end
  local now = now_ms()
  local pend, lease = b .. ':pend', b .. ':lease'
  local ready = redis.call('ZCOUNT', pend, '-inf', now)
  local delayed = redis.call('ZCARD', pend) - ready
  local expired = redis.call('ZCOUNT', lease, '-inf', now)
  local leased = redis.call('ZCARD', lease) - expired
  local oldest_ready = 0
  local first = first_score(pend)
  if first and first <= now then oldest_ready = now - first end
  -- The oldest lease: the earliest claimed-at among the first leases by
  -- deadline (exact while every claim asks for the same lease time).
  local oldest_lease = 0
  for _, m in ipairs(redis.call('ZRANGE', lease, 0, 15)) do
    local at = tonumber(redis.call('HGET', b .. ':j:' .. m, 'c'))
    if at and now - at > oldest_lease then oldest_lease = now - at end
  end
  local cfg = redis.call('HMGET', b .. ':cfg', 'paused', 'pushed', 'claimed', 'acked')
  local reply = {'ok', ready, delayed, leased, expired, redis.call('ZCARD', b .. ':dead'), oldest_lease,
                 oldest_ready, cfg[1] == '1' and 1 or 0}
  local totals = redis.call('HMGET', b .. ':st', unpack(STAT_FIELDS))
  totals[1], totals[2], totals[3] = cfg[2], cfg[3], cfg[4]  -- kept in B:cfg
  for i = 1, #STAT_FIELDS do reply[#reply + 1] = tonumber(totals[i]) or 0 end
  return reply
end

-- peek: B, state (ready|delayed|leased|dead), limit
--   -> ok k {id attempts ms_until enqueued_ms_ago failed_ms_ago(-1 none) error payload owner}*k
local function jr_peek(keys, args)
  local b = keys[1]
  if redis.call('EXISTS', b .. ':cfg') == 0 then return {'not_found'} end
  local now, state, limit = now_ms(), args[1], tonumber(args[2])
  local ms
  if state == 'ready' then
    ms = redis.call('ZRANGEBYSCORE', b .. ':pend', '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  elseif state == 'delayed' then
    ms = redis.call('ZRANGEBYSCORE', b .. ':pend', '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, limit)
  elseif state == 'leased' then
    ms = redis.call('ZRANGE', b .. ':lease', 0, limit - 1, 'WITHSCORES')
  else
    ms = redis.call('ZRANGE', b .. ':dead', 0, limit - 1, 'WITHSCORES')
  end
  local reply = {'ok', #ms / 2}
  for i = 1, #ms, 2 do
    local m = ms[i]
    local v = redis.call('HMGET', b .. ':j:' .. m, 'a', 't', 'd', 'e', 'p', 'o')
    local until_ms = 0
    if state == 'delayed' or state == 'leased' then until_ms = tonumber(ms[i + 1]) - now end
    local failed = -1
    if state == 'dead' and v[3] then failed = now - tonumber(v[3]) end
    for _, x in ipairs({tonumber(m), tonumber(v[1]) or 0, until_ms, now - (tonumber(v[2]) or now), failed,
                        v[4] or '', v[5] or '', v[6] or ''}) do
      reply[#reply + 1] = x
    end
  end
  return reply
end

-- One dead job back to pending, attempts reset, its note cleared.
local function requeue_one(b, m, now)
  if redis.call('ZREM', b .. ':dead', m) == 0 then return false end
  local jk = b .. ':j:' .. m
  redis.call('HSET', jk, 'a', 0, 't', now)
  redis.call('HDEL', jk, 'e', 'd')
  redis.call('ZADD', b .. ':pend', now, m)
  return true
end

-- requeue: B, id -> ok 1|0
local function jr_requeue(keys, args)
  local b = keys[1]
  local c = config(b)
  if not c then return {'not_found'} end
  if not requeue_one(b, member(args[1]), now_ms()) then return {'ok', 0} end
  count(b, 'requeued', 1)
  wake(b, c, 1, false)
  return {'ok', 1}
end

-- requeue_dead: B, limit -> ok n (the client calls again until n < limit,
-- so that no one call holds the server for long)
local function jr_requeue_dead(keys, args)
  local b = keys[1]
  local c = config(b)
  if not c then return {'not_found'} end
  local now, n = now_ms(), 0
  for _, m in ipairs(redis.call('ZRANGE', b .. ':dead', 0, tonumber(args[1]) - 1)) do
    if requeue_one(b, m, now) then n = n + 1 end
  end
  count(b, 'requeued', n)
  wake(b, c, n, false)
  return {'ok', n}
end

-- remove_dead: B, id -> ok 1|0
local function jr_remove_dead(keys, args)
  local b = keys[1]
  local c = config(b)
  if not c then return {'not_found'} end
  local m = member(args[1])
  if redis.call('ZREM', b .. ':dead', m) == 0 then return {'ok', 0} end
  drop_job(b, c, m)
  gone(b, c, 1, 0)
  count(b, 'purged', 1)
  wake(b, c, 1, true)
  return {'ok', 1}
end

-- Moving dead jobs to another queue (RedisQueue::move_dead), per job:
-- jr_move_take here lists dead jobs with what a copy needs; jr_move_in on
-- the target adds the copy under the move's key; jr_move_out here deletes
-- the job if it is still the same death (its score in dead: the time it
-- died). The two queues may be on different servers or cluster nodes, so
-- the three are separate calls. A mover that dies after jr_move_in and
-- before jr_move_out leaves the job in both queues: the next move sends the
-- same key (the client makes it from this queue's incarnation, the id and
-- the time of death), the target answers duplicate, and only jr_move_out is
-- done. A copy gone from the target for longer than its dedup window
-- arrives a second time: at-least-once, never lost. A job requeued by a
-- rival and dead again has a new time of death: a new key, moved again.

-- move_take: B, offset, limit -> ok n {id died_at attempts enqueued_at note payload}*n
local function jr_move_take(keys, args)
  local b = keys[1]
  if redis.call('EXISTS', b .. ':cfg') == 0 then return {'not_found'} end
  local first = tonumber(args[1])
  local ms = redis.call('ZRANGE', b .. ':dead', first, first + tonumber(args[2]) - 1, 'WITHSCORES')
  local reply = {'ok', #ms / 2}
  for i = 1, #ms, 2 do
    local v = redis.call('HMGET', b .. ':j:' .. ms[i], 'a', 't', 'e', 'p')
    for _, x in ipairs({tonumber(ms[i]), ms[i + 1], tonumber(v[1]) or 0, v[2] or '0', v[3] or '', v[4] or ''}) do
      reply[#reply + 1] = x
    end
  end
  return reply
end

-- move_in: B, key, as_ready (1|0), attempts, enqueued_at, died_at, note, payload
--   -> ok id | duplicate id | full | too_large | not_found
-- As ready: a new job (attempts 0, age from now), as a push with the key.
-- As dead: with its attempts, age, time of death and note.
local function jr_move_in(keys, args)
  local b = keys[1]
  local c = config(b)
  if not c then return {'not_found'} end
  local key, payload = args[1], args[7]
  if #payload > c.max_payload then return {'too_large'} end
  local kk, existing = remembered(b, c, key)
  if existing then return {'duplicate', existing} end
  if room(b, c) <= 0 then return {'full'} end
  local id = insert(b, c, now_ms(), 0, args, 7, 7, key)[1]
  local m = member(id)
  if args[2] ~= '1' then
    redis.call('ZREM', b .. ':pend', m)
    redis.call('HSET', b .. ':j:' .. m, 'a', args[3], 't', args[4])
    to_dead(b, m, tonumber(args[5]), args[6])
  end
  redis.call('SET', kk, m)
  return {'ok', id}
end

-- move_out: B, id, died_at -> ok 1 | ok 0 (no longer that dead job: left)
local function jr_move_out(keys, args)
  local b = keys[1]
  local c = config(b)
  if not c then return {'not_found'} end
  local m = member(args[1])
  if redis.call('ZSCORE', b .. ':dead', m) ~= args[2] then return {'ok', 0} end
  redis.call('ZREM', b .. ':dead', m)
  drop_job(b, c, m)
  gone(b, c, 1, 0)
  wake(b, c, 1, true)
  return {'ok', 1}
end

-- purge: B, what (bits: 1 ready, 2 delayed, 4 dead), limit -> ok n
-- Leases are never purged (they end in ack or expiry). At most `limit` jobs
-- per call; the client calls again until n < limit.
local function jr_purge(keys, args)
  local b = keys[1]
  local c = config(b)
  if not c then return {'not_found'} end
  local what, limit, now = tonumber(args[1]), tonumber(args[2]), now_ms()
  local victims = {}
  local function take(key, lo, hi)
    if #victims >= limit then return end
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, lo, hi, 'LIMIT', 0, limit - #victims)) do
      redis.call('ZREM', key, m)
      victims[#victims + 1] = m
    end
  end
  if what % 2 == 1 then take(b .. ':pend', '-inf', now) end
  if math.floor(what / 2) % 2 == 1 then take(b .. ':pend', '(' .. now, '+inf') end
  if math.floor(what / 4) % 2 == 1 then take(b .. ':dead', '-inf', '+inf') end
  for _, m in ipairs(victims) do drop_job(b, c, m) end
  gone(b, c, #victims, 0)
  count(b, 'purged', #victims)
  wake(b, c, #victims, true)
  return {'ok', #victims}
end

-- remove: B -> ok 1|0. Deletes the queue's every key but the remembered
-- de-duplication keys, which expire on their own (their names carry the
-- incarnation, so a queue created again does not see them). One call:
-- it holds the server for time linear in the queue's jobs.
local function jr_remove(keys, args)
  local b = keys[1]
  if redis.call('EXISTS', b .. ':cfg') == 0 then return {'ok', 0} end
  local c = config(b)
  for _, z in ipairs({':pend', ':lease', ':dead'}) do
    for _, m in ipairs(redis.call('ZRANGE', b .. z, 0, -1)) do
      local key = redis.call('HGET', b .. ':j:' .. m, 'k')
      if key and key ~= '' then redis.call('DEL', key_entry(b, c, key)) end
      redis.call('DEL', b .. ':j:' .. m)
    end
  end
  redis.call('DEL', b .. ':cfg', b .. ':st', b .. ':pend', b .. ':lease', b .. ':dead')
  -- Wake every sleeper so that it finds the queue gone (not_found).
  signal(b .. ':wake', MARKERS)
  signal(b .. ':room', MARKERS)
  redis.call('PEXPIRE', b .. ':wake', 10000)
  redis.call('PEXPIRE', b .. ':room', 10000)
  return {'ok', 1}
end

-- sweep: B -> ok expired dead_lettered. What every claim does first, alone
-- (for a janitor, or an operator): at most SWEEP leases per call; the
-- client calls again while a call takes SWEEP.
local function jr_sweep(keys, args)
  local b = keys[1]
  local c = config(b)
  if not c then return {'not_found'} end
  local back, dead = sweep(b, c, now_ms())
  return {'ok', back + dead, dead}
end

-- pause: B, 1|0 -> ok changed
local function jr_pause(keys, args)
  local b = keys[1]
  if not config(b) then return {'not_found'} end
  local was = redis.call('HGET', b .. ':cfg', 'paused')
  if was == args[1] then return {'ok', 0} end
  redis.call('HSET', b .. ':cfg', 'paused', args[1])
  if args[1] == '0' then signal(b .. ':wake', MARKERS) end
  return {'ok', 1}
end

local function jr_version(keys, args) return VERSION end

-- Flags. stats, peek and version only read (no-writes: FCALL_RO may run
-- them on a replica). Every function that does not add a job may run when
-- the server is at maxmemory (allow-oom): else a full server would refuse
-- the claims, acks and purges that drain it. They add at most a few small
-- fields (a claim's owner and time). create, push and push_many are refused
-- there (server_error, OOM), as they should be.
local function writer(name, callback) redis.register_function(name, callback) end
local function drainer(name, callback)
  redis.register_function{function_name = name, callback = callback, flags = {'allow-oom'}}
end
local function reader(name, callback)
  redis.register_function{function_name = name, callback = callback, flags = {'no-writes'}}
end
writer('jr_create', jr_create)
reader('jr_open', jr_open)
writer('jr_push', jr_push)
writer('jr_move_in', jr_move_in)
writer('jr_push_many', jr_push_many)
drainer('jr_claim', jr_claim)
drainer('jr_ack', jr_ack)
drainer('jr_ack_many', jr_ack_many)
drainer('jr_release', jr_release)
drainer('jr_extend', jr_extend)
reader('jr_stats', jr_stats)
reader('jr_peek', jr_peek)
drainer('jr_requeue', jr_requeue)
drainer('jr_requeue_dead', jr_requeue_dead)
drainer('jr_remove_dead', jr_remove_dead)
reader('jr_move_take', jr_move_take)
drainer('jr_move_out', jr_move_out)
drainer('jr_purge', jr_purge)
drainer('jr_remove', jr_remove)
drainer('jr_pause', jr_pause)
drainer('jr_sweep', jr_sweep)
reader('jr_version', jr_version)
