-- POST /token with a token never seen before on every request (cache misses).
local counter = 0
-- BENCH_COLD_TAG keeps two cold phases of one run (and the steps of bench/memory.sh) apart.
local run = (os.getenv("BENCH_COLD_TAG") or "") .. os.time()

request = function()
  counter = counter + 1
  local body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
    .. "&subject_token=cold-" .. run .. "-" .. counter
    .. "&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"
  return wrk.format("POST", "/token", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = os.getenv("BENCH_BASIC"),
  }, body)
end
