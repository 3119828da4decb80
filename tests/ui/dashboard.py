"""The dashboard in headless Chromium, as an operator uses it: sign in, create a key and use it
through Envoy with the official openai client, watch its spend move, block it and see the
gateway refuse it within a second. Screenshots of each page go to $SCREENSHOTS.

Environment: ADMIN_URL, GATEWAY_URL, ADMIN_TOKEN, SCREENSHOTS, WARDEN_CHROMIUM.
"""

import json
import os
import pathlib
import re
import sys
import time

import openai
from playwright.sync_api import sync_playwright

ADMIN = os.environ["ADMIN_URL"].rstrip("/")
GATEWAY = os.environ["GATEWAY_URL"].rstrip("/")
TOKEN = os.environ["ADMIN_TOKEN"]
SHOTS = pathlib.Path(os.environ["SCREENSHOTS"])
CHROMIUM = os.environ.get("WARDEN_CHROMIUM", "/usr/bin/chromium")


def check(condition, what):
    if not condition:
        print(f"dashboard: FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def chat(key):
    client = openai.OpenAI(base_url=GATEWAY + "/v1", api_key=key, max_retries=0, timeout=10)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def spent(page):
    """The key's first budget's spend, in dollars, as its page shows it."""
    cell = page.locator("table tbody tr td.num").first.text_content()
    return float(cell.strip().lstrip("$"))


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    # The audit log grows long: its first screen is enough.
    shot = lambda name: page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=name != "audit")

    page.goto(ADMIN + "/")
    check(page.url.endswith("/ui/login"), f"/ leads to the sign-in, not {page.url}")
    shot("login")
    page.get_by_label("Admin token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    check("That is not the admin token" in page.content(), "a wrong token is refused")
    page.get_by_label("Admin token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/ui$"))
    check(page.get_by_role("heading", name="Overview").is_visible(), "the overview after sign-in")

    # A key with a daily budget on the mock provider, created in the form.
    page.goto(ADMIN + "/ui/keys")
    page.get_by_label("Name", exact=True).fill("browser-key")
    body = {
        "provider_configs": [{"provider": "mock", "weight": 1, "allowed_models": ["*"], "key_ids": ["*"]}],
        "budgets": [{"max_limit": 1.0, "reset_duration": "1d"}],
    }
    page.get_by_label(re.compile("Everything else")).fill(json.dumps(body))
    page.get_by_role("button", name="Create the key").click()
    value = page.locator("#new-key").text_content()
    check(value and value.startswith("sk-bf-"), f"the new key's value is shown: {value!r}")
    shot("keys")
    page.goto(ADMIN + "/ui/keys")
    check(value not in page.content(), "the value is shown once only")

    # Used through Envoy with the official client; its spend bar moves.
    for _ in range(3):
        answer = chat(value)
        check(answer.choices[0].message.content, "the chat is answered")
    page.get_by_role("link", name="browser-key").click()
    deadline = time.monotonic() + 15
    while spent(page) <= 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        page.reload()
    check(spent(page) > 0, "the key's spend bar moved after priced requests")
    check("warden:budget:vk:" in page.content(), "the key's page shows the Envoy's lease of its budget")
    shot("key")

    # Blocked after a confirmation: the gateway refuses it within a second.
    page.get_by_role("link", name="Block this key…").click()
    page.get_by_role("button", name="Yes, block it").click()
    page.wait_for_selector("text=Saved: every Envoy enforces it now")
    blocked_at = time.monotonic()
    refused = None
    while time.monotonic() - blocked_at < 5:
        try:
            chat(value)
        except openai.PermissionDeniedError:
            refused = time.monotonic() - blocked_at
            break
        time.sleep(0.05)
    check(refused is not None and refused < 1.0, f"403 within a second of blocking (took {refused})")

    for name in ["usage", "providers", "mcp", "fleet", "audit", "simulator"]:
        page.goto(f"{ADMIN}/ui/{name}")
        check(page.get_by_role("heading", level=1).is_visible(), f"the {name} page renders")
        shot(name)
    check("browser-key" in page.content(), "the simulator lists the key")
    page.goto(ADMIN + "/ui")
    check(page.locator("td", has_text="browser-key").count() >= 2, "the overview names the key in its spend and its budget")
    shot("overview")
    page.goto(ADMIN + "/ui/audit")
    check("dashboard" in page.content(), "the audit log names the dashboard as the actor")

    # Phone width: the pages still render.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(ADMIN + "/ui/keys")
    check(page.get_by_role("button", name="Create the key").is_visible(), "the keys page at phone width")
    browser.close()

print(f"dashboard: ok (403 {refused * 1000:.0f} ms after the block)")
