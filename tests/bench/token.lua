-- wrk script: client_credentials token requests with client_secret_basic.
-- The credentials come from the environment (BENCH_BASIC = base64 of
-- "id:secret"), so nothing secret is written into this file.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BENCH_BASIC")
wrk.body = "grant_type=client_credentials&scope=bench%3Aread&resource=https%3A%2F%2Fbench.example"
