-- wrk script for the vrypt-server benchmark (bench/bench.py drives it).
--
-- Environment:
--   BENCH_PIPELINE    requests written back to back per round trip (default 1)
--   BENCH_STOP_AFTER  stop after this many responses, 0 = run for -d (default 0)
--   BENCH_PACE_MS     each connection waits this long after a response before
--                     its next request, 0 = none (default 0)
-- On exit it prints one line "BENCHJSON {...}" with the totals and latency
-- percentiles (microseconds) so the harness does not parse wrk's prose.

local depth = tonumber(os.getenv("BENCH_PIPELINE") or "1") or 1
local stop_after = tonumber(os.getenv("BENCH_STOP_AFTER") or "0") or 0
local pace_ms = tonumber(os.getenv("BENCH_PACE_MS") or "0") or 0

if pace_ms > 0 then
   -- wrk calls delay() before each request and waits that many milliseconds.
   delay = function()
      return pace_ms
   end
end

if depth > 1 then
   local batch = nil
   -- wrk counts the requests in this string and waits for as many responses
   -- before it writes the next batch.
   request = function()
      if batch == nil then
         local parts = {}
         for i = 1, depth do
            parts[i] = wrk.format(nil, "/")
         end
         batch = table.concat(parts)
      end
      return batch
   end
end

if stop_after > 0 then
   local seen = 0
   response = function(status, headers, body)
      seen = seen + 1
      if seen == stop_after then
         -- wrk's main thread sleeps for the whole -d; the harness sends it
         -- SIGINT when it reads this line, and wrk then reports at once.
         wrk.thread:stop()
         io.write("BENCHSTOP\n")
         io.flush()
      end
   end
end

-- Percentiles of wrk's latency histogram (microseconds), as wrk --latency
-- prints them, minus a wrk bug: before done() wrk adds its coordinated-
-- omission correction samples, and some can lie below the smallest recorded
-- sample, a range latency:percentile() never scans (it then returns 0 for
-- high percentiles, seen with pipelining). Lua cannot read bucket counts, so
-- find the share of samples wrk can still reach (the largest p for which it
-- answers) and shift p down by the unreachable share, which all lies below.
local function percentiles(latency, wanted)
   local out = {}
   if latency.max == 0 then
      for i = 1, #wanted do
         out[i] = 0
      end
      return out
   end
   local lo, hi = 0, 100
   for _ = 1, 50 do
      local mid = (lo + hi) / 2
      if latency:percentile(mid) > 0 then
         lo = mid
      else
         hi = mid
      end
   end
   for i, p in ipairs(wanted) do
      local shifted = p - (100 - lo)
      out[i] = shifted > 0 and latency:percentile(shifted) or latency.min
   end
   return out
end

done = function(summary, latency, requests)
   local e = summary.errors
   local pct = percentiles(latency, {50, 90, 99})
   io.write(string.format(
      'BENCHJSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
      '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
      summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      pct[1], pct[2], pct[3], latency.mean, latency.max))
end
