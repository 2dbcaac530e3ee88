-- wrk script for bench/overhead.py: POST a JSON body with a bearer key.
-- Usage: wrk ... -s bench/post.lua URL -- BODY_FILE KEY
function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[2]
end
