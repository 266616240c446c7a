-- wrk script: a mix of good and hostile requests, one kind after another
-- on each connection, for tests/bench/leakcheck.sh and soak.sh. Secrets
-- come from the environment (see common.sh). done() prints one line per
-- HTTP status: "status CODE COUNT". With BENCH_DELAY_MS set, each
-- connection waits that long before each request (soak.sh's fixed rate).
local basic = os.getenv("BENCH_BASIC")
local svc = os.getenv("BENCH_SVC_BASIC")
local approver = os.getenv("BENCH_APPROVER")
local token = os.getenv("BENCH_TOKEN")
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local form = { ["Content-Type"] = "application/x-www-form-urlencoded" }

local function with(h, extra)
	local t = {}
	for k, v in pairs(h) do t[k] = v end
	for k, v in pairs(extra) do t[k] = v end
	return t
end

local kinds = {
	-- a read token
	function() return wrk.format("POST", "/oauth2/token",
	    with(form, { Authorization = "Basic " .. basic }),
	    "grant_type=client_credentials&scope=load%3Aread&resource=https%3A%2F%2Fload.example") end,
	-- introspection of a live token
	function() return wrk.format("POST", "/oauth2/introspect",
	    with(form, { Authorization = "Basic " .. svc }), "token=" .. token) end,
	-- another read token
	function() return wrk.format("POST", "/oauth2/token",
	    with(form, { Authorization = "Basic " .. basic }),
	    "grant_type=client_credentials&scope=load%3Aread&resource=https%3A%2F%2Fload.example&requested_ttl=60") end,
	-- introspection of garbage
	function() return wrk.format("POST", "/oauth2/introspect",
	    with(form, { Authorization = "Basic " .. svc }), "token=eyJhbGciOiJub25lIn0.e30.") end,
	-- a write scope without approval (403)
	function() return wrk.format("POST", "/oauth2/token",
	    with(form, { Authorization = "Basic " .. basic }),
	    "grant_type=client_credentials&scope=load%3Awrite&resource=https%3A%2F%2Fload.example") end,
	-- malformed form encoding
	function() return wrk.format("POST", "/oauth2/token",
	    with(form, { Authorization = "Basic " .. basic }), "grant_type=%zz&&=&scope") end,
	-- a repeated parameter
	function() return wrk.format("POST", "/oauth2/token",
	    with(form, { Authorization = "Basic " .. basic }),
	    "grant_type=client_credentials&grant_type=client_credentials") end,
	-- a wrong secret for an unknown client (401, then 429 lockout)
	function() return wrk.format("POST", "/oauth2/token",
	    with(form, { Authorization = "Basic bm9ib2R5Omd1ZXNz" }),
	    "grant_type=client_credentials&scope=load%3Aread") end,
	-- the approver API: a list, then a bad JSON decision
	function() return wrk.format("GET", "/v1/approvals?state=all",
	    { Authorization = "Bearer " .. approver }) end,
	function() return wrk.format("POST", "/v1/approvals/AAAAAAAAAAAAAAAAAAAAAA/approve",
	    { Authorization = "Bearer " .. approver, ["Content-Type"] = "application/json" },
	    "{\"reason\": [1, {\"x\":") end,
	-- wrong content type, unknown path, bad method, metadata
	function() return wrk.format("POST", "/oauth2/token",
	    { ["Content-Type"] = "text/plain", Authorization = "Basic " .. basic }, "x") end,
	function() return wrk.format("GET", "/nope/" .. string.rep("a", 300)) end,
	function() return wrk.format("DELETE", "/oauth2/token") end,
	function() return wrk.format("GET", "/.well-known/jwks.json") end,
	-- revocation of garbage by the agent (200, RFC 7009)
	function() return wrk.format("POST", "/oauth2/revoke",
	    with(form, { Authorization = "Basic " .. basic }), "token=not-a-token") end,
}

local threads = {}

function setup(thread)
	table.insert(threads, thread)
end

function init(args)
	statuses = {}
	n = 0
end

function request()
	n = n + 1
	return kinds[(n % #kinds) + 1]()
end

function delay()
	return pause
end

function response(status, headers, body)
	statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
	local total = {}
	for _, t in ipairs(threads) do
		for code, count in pairs(t:get("statuses")) do
			total[code] = (total[code] or 0) + count
		end
	end
	for code, count in pairs(total) do
		io.write(string.format("status %d %d\n", code, count))
	end
end
