"""A Bifrost user's governance script, run as it is against Warden: plain HTTP, the shapes of
Bifrost's API (legacy and current), every key used the moment it is created.

Environment: ADMIN_URL, ADMIN_TOKEN, GATEWAY_URL. Exits non-zero on the first surprise.
"""
import json
import os
import urllib.error
import urllib.request

ADMIN, TOKEN, GATEWAY = os.environ["ADMIN_URL"], os.environ["ADMIN_TOKEN"], os.environ["GATEWAY_URL"]


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(ADMIN + path, data=data, method=method)
    request.add_header("Authorization", "Bearer " + TOKEN)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def ok(method, path, body=None):
    status, answer = call(method, path, body)
    assert status == 200, f"{method} {path}: {status} {answer}"
    return answer


def chat(key):
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}).encode()
    request = urllib.request.Request(GATEWAY + "/v1/chat/completions", data=body, method="POST")
    request.add_header("x-bf-vk", key)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def key(body):
    created = ok("POST", "/api/governance/virtual-keys", body)
    assert created["message"] == "Virtual key created successfully", created
    return created["virtual_key"]


def spend_until_refused(secret):
    served = 0
    while True:
        status, answer = chat(secret)
        if status != 200:
            return served, status, answer
        served += 1
        assert served < 10, "a budget of $0.00001 served ten requests"


# A customer and a team, with the legacy singular `budget` and the current list.
customer = ok("POST", "/api/governance/customers", {"name": "acme", "budget": {"max_limit": 100, "reset_duration": "1M"}})["customer"]
team = ok("POST", "/api/governance/teams", {
    "name": "ml",
    "customer_id": customer["id"],
    "budgets": [{"max_limit": 50, "reset_duration": "1M"}],
    "rate_limit": {"request_max_limit": 1000, "request_reset_duration": "1h"},
})["team"]
grant = {"provider": "mock", "weight": 1.0, "allowed_models": ["*"], "key_ids": ["*"]}

# Keys of every shape, each used at once.
current = key({
    "name": "current",
    "team_id": team["id"],
    "budgets": [{"max_limit": 5, "reset_duration": "1d"}],
    "rate_limit": {"token_max_limit": 100000, "token_reset_duration": "1h"},
    "provider_configs": [dict(grant, budgets=[{"max_limit": 2, "reset_duration": "1d"}])],
})
legacy = key({
    "name": "legacy",
    "customer_id": customer["id"],
    "budget": {"max_limit": 5, "reset_duration": "1d"},
    "provider_configs": [dict(grant, budget={"max_limit": 2, "reset_duration": "1d"})],
})
plain = key({"name": "plain", "provider_configs": [grant]})
for k in (current, legacy, plain):
    status, answer = chat(k["value"])
    assert status == 200, f"key {k['name']} on its first request: {status} {answer}"
assert legacy["budgets"][0]["max_limit"] == 5 and legacy["provider_configs"][0]["budgets"][0]["max_limit"] == 2, legacy

# Reads embed relations; lists take from_memory.
got = ok("GET", f"/api/governance/virtual-keys/{current['id']}")["virtual_key"]
assert got["team"]["name"] == "ml" and got["customer"] is None, got
got = ok("GET", f"/api/governance/customers/{customer['id']}?from_memory=true")
assert [t["name"] for t in ok("GET", f"/api/governance/customers/{customer['id']}")["customer"]["teams"]] == ["ml"]
for path in ("/api/governance/teams", "/api/governance/customers", "/api/governance/virtual-keys"):
    assert ok("GET", path + "?from_memory=true")["count"] >= 1, path

# A budget spent, raised, and used again at once.
tight = key({"name": "tight", "budgets": [{"max_limit": 0.00001, "reset_duration": "1d"}], "provider_configs": [grant]})
served, status, answer = spend_until_refused(tight["value"])
assert (served, status, answer["error"]["type"]) == (2, 402, "budget_exceeded"), (served, status, answer)
assert "spent 0.000010" in answer["error"]["message"], answer
ok("PUT", f"/api/governance/virtual-keys/{tight['id']}", {"budgets": [{"max_limit": 1.0, "reset_duration": "1d"}]})
status, answer = chat(tight["value"])
assert status == 200, f"right after the raise: {status} {answer}"

# Budgets and rate limits as resources.
budgets = ok("GET", "/api/governance/budgets")["budgets"]
mine = [b for b in budgets if b.get("virtual_key_id") == tight["id"]]
assert len(mine) == 1 and mine[0]["max_limit"] == 1.0 and mine[0]["id"], mine
assert any(b.get("team_id") == team["id"] for b in budgets) and any(b.get("customer_id") == customer["id"] for b in budgets)
limits = ok("GET", "/api/governance/rate-limits")["rate_limits"]
assert any(l.get("team_id") == team["id"] and l["request_max_limit"] == 1000 for l in limits), limits

# An override on a spent budget: usable at once, for as long as it lasts.
capped = key({"name": "capped", "budgets": [{"max_limit": 0.00001, "reset_duration": "1d"}], "provider_configs": [grant]})
served, status, _ = spend_until_refused(capped["value"])
assert (served, status) == (2, 402), (served, status)
budget_id = capped["budgets"][0]["id"]
answer = ok("PUT", f"/api/governance/virtual-keys/{capped['id']}/budgets/{budget_id}/override",
            {"amount": 1.0, "mode": "cycles", "cycles": 2})
assert abs(answer["effective_max_limit"] - 1.00001) < 1e-9, answer
status, answer = chat(capped["value"])
assert status == 200, f"right after the override: {status} {answer}"

# Deleting a team that still has keys: its keys lose it and keep working.
ok("DELETE", f"/api/governance/teams/{team['id']}")
got = ok("GET", f"/api/governance/virtual-keys/{current['id']}")["virtual_key"]
assert got["team_id"] is None and got["team"] is None, got
status, answer = chat(current["value"])
assert status == 200, (status, answer)

print("bifrost flow: ok")
