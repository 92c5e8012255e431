-- wrk script for deployql's benchmark. WORKLOAD picks the operation:
--   status  the full status lookup (deployment + replicas + resources + last 10 history rows + health),
--           bench/status.graphql
--   status-id   the same document by its id in a trusted manifest (`documentId: "StatusPage"`)
--   status-apq  the same document by its SHA-256 (STATUS_HASH), registered as an automatic persisted query
--   list    the list page: deployments(first: 50) { nodes { id name status health targetReplicas } }
--   health  a health-only lookup
--   create  createDeployment with a fresh name
-- TARGETS names the file of "<token> <deployment id>" lines written by deployql-bench-data.
-- A non-200 status or a body with "errors" counts as an error.

local workload = os.getenv("WORKLOAD") or "status"
local targets_path = os.getenv("TARGETS") or "bench/out/targets.txt"

local function read(path)
  local file = assert(io.open(path))
  local text = file:read("*a")
  file:close()
  return (text:gsub("%s+$", ""))
end

local status = read("bench/status.graphql")
local queries = {
  status = status,
  ["status-id"] = status,
  ["status-apq"] = status,
  list = "{ deployments(first: 50) { nodes { id name status health targetReplicas } } }",
  health = "query($id: ID!) { deployment(id: $id) { health } }",
  create = "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { id status health } }",
}
local query = assert(queries[workload], "unknown WORKLOAD " .. workload)

local threads = {}
local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_id", next_thread)
  table.insert(threads, thread)
end

local targets = {}
local created = 0
errors = 0

function init(args)
  for line in io.lines(targets_path) do
    local token, id = line:match("(%S+) (%S+)")
    targets[#targets + 1] = { token, id }
  end
  math.randomseed(os.time() * 1000 + thread_id)
end

function request()
  local target = targets[math.random(#targets)]
  local variables
  if workload == "list" then
    variables = "{}"
  elseif workload == "create" then
    created = created + 1
    local name = string.format("bench-%d-%d-%d-%d", os.time(), thread_id, created, math.random(1e9))
    variables = '{"input":{"name":"' .. name .. '","targetReplicas":3,'
      .. '"resources":{"cpuCores":0.5,"memoryMb":512,"storageGb":1}}}'
  else
    variables = '{"id":"' .. target[2] .. '"}'
  end
  local body
  if workload == "status-id" then
    body = '{"documentId":"StatusPage","variables":' .. variables .. '}'
  elseif workload == "status-apq" then
    body = '{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"' .. os.getenv("STATUS_HASH")
      .. '"}},"variables":' .. variables .. '}'
  else
    body = '{"query":"' .. query .. '","variables":' .. variables .. '}'
  end
  return wrk.format("POST", "/graphql", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. target[1],
  }, body)
end

function response(status, headers, body)
  if status ~= 200 or body:find('"errors"', 1, true) then
    errors = errors + 1
  end
end

function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("errors")
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d rps=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d socket_errors=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    failed, e.connect + e.read + e.write + e.timeout))
end
