#!/usr/bin/env bash
# `make run`: the control plane, the mock provider and Envoy with the Warden filter, on
# 127.0.0.1. Ctrl-C stops all three. State lives in data/ (delete it to start afresh).
#
# A real OpenAI-compatible provider instead of the mock:
#   WARDEN_UPSTREAM=https://api.openai.com/v1 PROVIDER_API_KEY=sk-... make run
# The key goes to the admin API once (POST /api/providers); Envoy gets it only over SDS.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${WARDEN_BIN:?}" "${ENVOY_BIN:?}" "${WARDEN_WASM:?}" "${WARDEN_PYTHON:?}" "${WARDEN_MCP_TIME:?}"
DATA=data
LISTEN=127.0.0.1:8080 ADMIN=127.0.0.1:8081 XDS=127.0.0.1:18000 MOCK=127.0.0.1:9000 ENVOY_ADMIN=127.0.0.1:9901
mkdir -p "$DATA/logs"
umask 077

if [[ ! -s $DATA/admin-token ]]; then
  "$WARDEN_PYTHON" -c 'import secrets; print("wdn-admin-" + secrets.token_hex(16))' > "$DATA/admin-token"
fi
TOKEN=$(cat "$DATA/admin-token")

pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "Stopping Warden..."
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT
trap "exit 130" INT TERM

"$WARDEN_BIN" mock-provider --addr "$MOCK" > "$DATA/logs/mock-provider.log" 2>&1 & pids+=($!)
"$WARDEN_BIN" serve --admin-addr "$ADMIN" --xds-addr "$XDS" --data-dir "$DATA" \
  --admin-token-file "$DATA/admin-token" --filter-wasm "$WARDEN_WASM" --gateway-url "http://$LISTEN" \
  --mcp-stdio-command "$WARDEN_MCP_TIME" \
  > "$DATA/logs/warden.log" 2>&1 & pids+=($!)
api() { curl -sf -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' "$@"; }
for _ in $(seq 100); do curl -sf "http://$ADMIN/health" > /dev/null && break; sleep 0.1; done
curl -sf "http://$ADMIN/health" > /dev/null || { echo "warden did not start; see $DATA/logs/warden.log"; exit 1; }

# Envoy reaches the xDS port over mutual TLS: bootstrap fetches this node's certificate from the
# admin API into $DATA/xds-tls/ and points the bootstrap at it.
"$WARDEN_BIN" bootstrap --listen "$LISTEN" --admin "$ENVOY_ADMIN" --xds "$XDS" --control-plane "http://$ADMIN" \
  --admin-token-file "$DATA/admin-token" --tls-dir "$DATA/xds-tls" --out "$DATA/envoy.yaml"
"$ENVOY_BIN" -c "$DATA/envoy.yaml" --concurrency 2 --use-dynamic-base-id > "$DATA/logs/envoy.log" 2>&1 & pids+=($!)

# The provider: the mock, or the real one named by WARDEN_UPSTREAM. Created or updated on
# every run, so switching between them needs no clean-up.
if [[ -n ${WARDEN_UPSTREAM:-} ]]; then
  PROVIDER=${WARDEN_PROVIDER_NAME:-openai} UPSTREAM=$WARDEN_UPSTREAM
  PROVIDER_KEY=${PROVIDER_API_KEY:?PROVIDER_API_KEY is needed with WARDEN_UPSTREAM}
else
  PROVIDER=mock UPSTREAM=http://$MOCK/v1 PROVIDER_KEY=mock-provider-key
fi
# name, base_url, keys as JSON; the key travels in the environment, not on a command line.
provider_json() {
  PROVIDER_KEY=$PROVIDER_KEY "$WARDEN_PYTHON" -c 'import json,os,sys
body = {"base_url": sys.argv[2], "keys": [{"id": "main", "value": os.environ["PROVIDER_KEY"]}]}
if sys.argv[1]: body["name"] = sys.argv[1]
print(json.dumps(body))' "$1" "$UPSTREAM"
}
if api "http://$ADMIN/api/providers/$PROVIDER" > /dev/null; then
  api -X PUT "http://$ADMIN/api/providers/$PROVIDER" -d "$(provider_json '')" > /dev/null
else
  api -X POST "http://$ADMIN/api/providers" -d "$(provider_json "$PROVIDER")" > /dev/null
fi

# An MCP server for the demo: mcp-server-time over stdio (installed by `make tools`), a child of
# the control plane; its get_current_time costs $0.001 a call and agent mode may run it unasked.
if ! api "http://$ADMIN/api/mcp/clients?search=time" | grep -q '"name":"time"'; then
  api -X POST "http://$ADMIN/api/mcp/client" -d '{"name":"time","connection_type":"stdio",
    "stdio_config":{"command":"'"$WARDEN_MCP_TIME"'","args":["--local-timezone","UTC"]},
    "tools_to_execute":["*"],"tools_to_auto_execute":["get_current_time"],
    "tool_pricing":{"get_current_time":0.001}}' > /dev/null
fi

# The demo key's secret is shown once by the API, so keep it for the next `make run`.
demo_config='{"provider_configs":[{"provider":"'$PROVIDER'","weight":1,"allowed_models":["gpt-4o-mini"],"key_ids":["*"]}],
  "mcp_configs":[{"mcp_client_name":"time","tools_to_execute":["*"]}],
  "rate_limit":{"request_max_limit":60,"request_reset_duration":"1m","token_max_limit":100000,"token_reset_duration":"1d"},
  "budgets":[{"max_limit":1,"reset_duration":"1d"}]}'
if [[ ! -s $DATA/demo-key ]] || ! api "http://$ADMIN/api/governance/virtual-keys?search=demo" | grep -q '"name":"demo"'; then
  api -X POST "http://$ADMIN/api/governance/virtual-keys" -d '{"name":"demo","description":"created by make run"}' \
    | "$WARDEN_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["virtual_key"]["value"])' > "$DATA/demo-key"
fi
KEY=$(cat "$DATA/demo-key")
KEY_ID=$(api "http://$ADMIN/api/governance/virtual-keys?search=demo" | "$WARDEN_PYTHON" -c 'import json,sys
print(next(k["id"] for k in json.load(sys.stdin)["virtual_keys"] if k["name"] == "demo"))')
api -X PUT "http://$ADMIN/api/governance/virtual-keys/$KEY_ID" -d "$demo_config" > /dev/null

for _ in $(seq 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $KEY" "http://$LISTEN/v1/models" || true)
  [[ $code == 200 ]] && break; sleep 0.1
done

cat <<MSG

Warden is running.
  Gateway (Envoy + Warden filter)  http://$LISTEN
  Admin API                         http://$ADMIN
  Dashboard                         http://$ADMIN/ui  (sign in with the admin token)
  Provider                          $PROVIDER at $UPSTREAM
  Logs                              $DATA/logs/

  Admin token: $TOKEN
  Demo key:    $KEY

  Demo key: gpt-4o-mini only, 60 requests a minute, 100k tokens and \$1 a day; the MCP
  server 'time' (mcp-server-time): its tools are added to the key's chat requests, and agent
  mode runs time-get_current_time by itself when the model asks for it.

Try:
  curl -si http://$LISTEN/v1/chat/completions -H "authorization: Bearer $KEY" \\
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'   # agent mode: x-warden-agent-steps
  curl -si http://$LISTEN/v1/chat/completions -H "authorization: Bearer $KEY" \\
    -H 'x-bf-mcp-include-clients: none' -H 'x-warden-include-cost: true' \\
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'   # x-ratelimit-*, x-warden-cost-usd
  curl -s http://$LISTEN/v1/chat/completions -H "authorization: Bearer $KEY" \\
    -d '{"model":"gpt-4o","messages":[]}'                             # 403 model_blocked
  curl -s "http://$LISTEN/v1/mcp/tool/execute?format=chat" -H "authorization: Bearer $KEY" \\
    -d '{"id":"call_1","type":"function","function":{"name":"time-get_current_time","arguments":"{\\"timezone\\":\\"UTC\\"}"}}'
                                                                    # an MCP tool call, \$0.001 of the budget
  curl -s http://$LISTEN/mcp -H "authorization: Bearer $KEY" -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' -H 'mcp-protocol-version: 2026-07-28' -H 'mcp-method: tools/list' \
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{
    "io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}'
                                                                    # Warden as an MCP server: the key's tools
  curl -s http://$MOCK/mock/script -H 'content-type: application/json' -d '[{"tool_calls":[{"id":"c1","type":"function","function":
    {"name":"time-get_current_time","arguments":"{\"timezone\":\"UTC\"}"}}]},{"content":"It is tea time."}]'
  curl -si http://$LISTEN/v1/chat/completions -H "authorization: Bearer $KEY" \
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"What time is it?"}]}'
                                     # agent mode: the mock asks for the time, Warden runs the tool
                                     # and asks again (x-warden-agent-steps: 2); add "stream":true to stream
  curl -s http://$LISTEN/v1/models -H "authorization: Bearer $KEY"   # only what the key may use
  curl -s http://$LISTEN/v1/models                                   # 401 virtual_key_required
  curl -s http://$ADMIN/api/governance/virtual-keys/quota -H "x-bf-vk: $KEY"  # the key's own quota
  curl -s "http://$ADMIN/api/usage?group_by=model" -H "authorization: Bearer $TOKEN"
  curl -s http://$ADMIN/api/leases -H "authorization: Bearer $TOKEN"    # Envoy's share of each budget
  curl -s http://$ADMIN/api/mcp/clients -H "authorization: Bearer $TOKEN"   # MCP servers: state, era, tools
  curl -s http://$ADMIN/api/providers -H "authorization: Bearer $TOKEN"
  curl -s http://$ADMIN/api/governance/virtual-keys -H "authorization: Bearer $TOKEN"
  curl -s -X POST http://$ADMIN/api/governance/virtual-keys -H "authorization: Bearer $TOKEN" \\
    -d '{"name":"team-a"}'                                           # a new key, shown once
  curl -s http://$ADMIN/api/envoy/nodes -H "authorization: Bearer $TOKEN"

Ctrl-C stops everything.
MSG
wait -n "${pids[@]}" || true
echo "A Warden process exited; see $DATA/logs/."
