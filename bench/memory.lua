-- wrk script for bench/memory: `{ __typename }` with TOKEN. Prints
-- "RESULT <answered> <errors>"; a non-200 status counts as an error.
local token = assert(os.getenv("TOKEN"), "TOKEN is not set")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local body = '{"query":"{ __typename }"}'
local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
answered = 0
errors = 0

function request()
  return wrk.format("POST", "/graphql", headers, body)
end

function response(status)
  answered = answered + 1
  if status ~= 200 then
    errors = errors + 1
  end
end

function done()
  local sum, failed = 0, 0
  for _, thread in ipairs(threads) do
    sum = sum + thread:get("answered")
    failed = failed + thread:get("errors")
  end
  io.write(string.format("RESULT %d %d\n", sum, failed))
end
