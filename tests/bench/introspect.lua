-- wrk script: introspection of read tokens by a service. BENCH_TOKENS_FILE
-- names a file with one token per line (many tokens, as a service sees
-- them); each connection walks the list from its own offset. Without it,
-- BENCH_TOKEN is introspected over and over (one hot token row).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BENCH_BASIC")

local tokens = {}
local path = os.getenv("BENCH_TOKENS_FILE")
if path ~= nil and path ~= "" then
	for line in io.lines(path) do
		if line ~= "" then tokens[#tokens + 1] = line end
	end
end
if #tokens == 0 then
	wrk.body = "token=" .. os.getenv("BENCH_TOKEN")
end

local counter = 0
function setup(thread)
	counter = counter + 1
	thread:set("offset", counter * 97)
end

local i = 0
function request()
	if #tokens == 0 then
		return wrk.format()
	end
	i = i + 1
	local t = tokens[((offset or 0) + i) % #tokens + 1]
	return wrk.format(nil, nil, nil, "token=" .. t)
end
