-- wrk script: plain GETs (the no-database HTTP ceiling).
wrk.method = "GET"
