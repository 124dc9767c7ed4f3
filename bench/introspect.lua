-- POST /introspect straight at the fake upstream, a new token each time: its own rate.
local counter = 0

request = function()
  counter = counter + 1
  return wrk.format("POST", "/introspect", {["Content-Type"] = "application/x-www-form-urlencoded"},
    "token=direct-" .. counter .. "&token_type_hint=access_token")
end
