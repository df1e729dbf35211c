-- wrk script: POSTs one message to /api/v1/app/{app}/msg/ per request.
--   wrk -t1 -c64 -d30s -s wrk-post.lua http://127.0.0.1:18071 -- APP_ID TOKEN
-- or with APP_ID and TOKEN in the environment. The body is about 250 bytes:
-- {"eventType":"bench.wrk","payload":{...about 200 bytes...}}.
-- At the end it prints one line: "WRK requests=N non2xx=N errors=N seconds=S ...".
-- With MAX_REQUESTS=N in the environment (and -t1) it stops after N answers;
-- a few more (up to the connection count) may be in flight then, and the
-- server may still accept them: count what the server ingested.

local app_id, token, req

function init(args)
    app_id = args[1] or os.getenv("APP_ID")
    token = args[2] or os.getenv("TOKEN")
    if not app_id or not token then
        error("wrk-post.lua needs APP_ID and TOKEN (wrk args or environment)")
    end
    wrk.method = "POST"
    wrk.path = "/api/v1/app/" .. app_id .. "/msg/"
    wrk.headers["Authorization"] = "Bearer " .. token
    wrk.headers["Content-Type"] = "application/json"
    wrk.body = '{"eventType":"bench.wrk","payload":{"source":"wrk-post.lua",'
        .. '"note":"a message of about two hundred bytes, as a small webhook would carry",'
        .. '"padding":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}'
    req = wrk.format()
end

function request()
    return req
end

local max_requests = tonumber(os.getenv("MAX_REQUESTS") or "")
if max_requests then
    local answered = 0
    function response(status, headers, body)
        answered = answered + 1
        if answered >= max_requests then
            wrk.thread:stop()
        end
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "WRK requests=%d non2xx=%d errors=%d seconds=%.3f p50_ms=%.2f p99_ms=%.2f\n",
        summary.requests, e.status, e.connect + e.read + e.write + e.timeout,
        summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
