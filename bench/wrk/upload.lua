-- Small uploads for wrk: `-- multipart PATH SIZE` POSTs one multipart/form-data
-- body (field "file") to PATH on every request; `-- put PREFIX SIZE` PUTs the
-- same bytes to PREFIX<thread>-<n>.bin, a new path on each request (mod_dav
-- would otherwise overwrite one file). done() prints one line "BENCH {json}".

threads = {}
tid = 0
bad = 0
counter = 0

local mode, target, size, body, req

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local function payload(n)
  local bytes = {}
  math.randomseed(os.time() + tid * 7919)
  for i = 1, n do bytes[i] = string.char(math.random(0, 255)) end
  return table.concat(bytes)
end

function init(args)
  mode = args[1] or "multipart"
  target = args[2] or "/api/upload/"
  size = tonumber(args[3] or "4096")
  local data = payload(size)
  if mode == "multipart" then
    local b = "benchboundary" .. tid .. "x7MA4YWxkTrZu0gW"
    body = "--" .. b .. "\r\n"
      .. 'Content-Disposition: form-data; name="file"; filename="small.bin"\r\n'
      .. "Content-Type: application/octet-stream\r\n\r\n"
      .. data .. "\r\n--" .. b .. "--\r\n"
    req = wrk.format("POST", target,
      { ["Content-Type"] = "multipart/form-data; boundary=" .. b }, body)
  else
    body = data
  end
end

function request()
  if mode == "multipart" then
    return req
  end
  counter = counter + 1
  return wrk.format("PUT", target .. tid .. "-" .. counter .. ".bin",
    { ["Content-Type"] = "application/octet-stream" }, body)
end

function response(status, headers, resp_body)
  if status < 200 or status > 299 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local nb = 0
  for _, t in ipairs(threads) do
    nb = nb + (tonumber(t:get("bad")) or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
      .. '"max_us": %d, "non2xx": %d, "socket_errors": %d, "bytes_read": %d}\n',
    summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), latency.max, nb,
    e.connect + e.read + e.write + e.timeout, summary.bytes))
end
