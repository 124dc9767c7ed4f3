-- A gateway's decision request for the one hot token (cache hit, minted token reused).
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer hot-token-0123456789abcdef"
wrk.headers["X-Forwarded-Method"] = "GET"
wrk.headers["X-Forwarded-Host"] = "api.example.com"
wrk.headers["X-Forwarded-Uri"] = "/api/orders/42"
