-- wrk script for bench/load.py: sends pre-signed deliveries, each at most once
-- per pass. The request file holds records of "<length> <signature>\n<body>";
-- thread N of M takes records N, N+M, N+2M, ... so threads never share one.

local requests = {}
local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path, count = args[1], tonumber(args[2])
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  local position, index = 1, 0
  while position <= #data do
    local newline = data:find("\n", position, true)
    local length, signature = data:sub(position, newline - 1):match("^(%d+) (%S+)$")
    length = tonumber(length)
    local body = data:sub(newline + 1, newline + length)
    position = newline + length + 1
    if index % count == id then
      table.insert(requests, wrk.format("POST", "/webhook", {
        ["Content-Type"] = "application/json",
        ["x-apple-signature"] = signature,
      }, body))
    end
    index = index + 1
  end
end

function request()
  counter = counter % #requests + 1
  return requests[counter]
end

function done(summary, latency, requests)
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d non2xx=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
