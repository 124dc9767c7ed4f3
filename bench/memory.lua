-- POST /token with a token never seen before on every request: each one leaves one more
-- identity in the caches. BENCH_MEMORY_TAG keeps the tokens of successive runs apart.
local counter = 0
local run = (os.getenv("BENCH_MEMORY_TAG") or "") .. os.time()

request = function()
  counter = counter + 1
  local body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
    .. "&subject_token=mem-" .. run .. "-" .. counter
    .. "&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"
  return wrk.format("POST", "/token", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = os.getenv("BENCH_BASIC"),
  }, body)
end
