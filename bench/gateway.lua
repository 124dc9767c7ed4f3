-- A client of the nginx gateway presenting the one hot token: nginx asks /forward-auth.
wrk.method = "GET"
wrk.headers["Host"] = "api.example.com"
wrk.headers["Authorization"] = "Bearer hot-token-0123456789abcdef"
