-- POST /token over one list of BENCH_FLEET_TOKENS distinct opaque tokens, in the same order
-- on every replica, so that replicas miss the same token at about the same moment; the list
-- starts again from the top when done. One wrk per replica runs this at the same time.
local tokens = tonumber(os.getenv("BENCH_FLEET_TOKENS") or "10000")
-- BENCH_FLEET_RUN names this run's tokens: the same for the three wrk processes.
local run = os.getenv("BENCH_FLEET_RUN") or "fleet"
-- A global, so that done() can read it from the thread.
sent = 0

request = function()
  local token = sent % tokens + 1
  sent = sent + 1
  local body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
    .. "&subject_token=fleet-" .. run .. "-" .. token
    .. "&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"
  return wrk.format("POST", "/token", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = os.getenv("BENCH_BASIC"),
  }, body)
end

-- How many requests the thread generated, for the count of distinct tokens asked about.
local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function()
  local most = 0
  for _, thread in ipairs(threads) do most = math.max(most, thread:get("sent") or 0) end
  io.write(string.format("tokens sent: %d\n", most))
end
