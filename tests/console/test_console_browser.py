"""The console in a real browser (Debian's Chromium through Playwright), against a real
`gateway serve` process on a real Redis, with the official openai SDK as the key's user."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from tests.support.configs import ADMIN_KEY
from tests.support.console_browser import chromium
from tests.support.edge_logguard import register_secret
from tests.support.processes import Replica
from tests.support.redis_server import RedisServer

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=alert(2)>"
TIMEOUT_MS = 10_000


def console_config(redis_url: str, prefix: str) -> dict[str, Any]:
    return {
        "server": {"access_log": False, "shutdown_delay_s": 0.1, "shutdown_grace_s": 2},
        "store": {"url": redis_url, "prefix": prefix},
        "auth": {"keys": [{"id": "ops", "key": "sk-ops-0123456789", "project": "operations"}]},
        "providers": [{"name": "mock", "api": "mock", "region": "eu"}],
        "models": [
            {
                "name": "mock-model",
                "targets": [{"provider": "mock", "model": "mock-model"}],
                "price": {"input": 2000.0, "output": 8000.0},
            },
            {
                "name": "mock-mini",
                "targets": [{"provider": "mock", "model": "mock-mini"}],
                "price": {"input": 500.0, "output": 1000.0},
            },
        ],
    }


@pytest.fixture(scope="module")
def replica(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replica]:
    workdir = tmp_path_factory.mktemp("console")
    gateway = Replica(console_config(redis_server.url, f"{workdir.name}:"), workdir, "console")
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as found:
        yield found


@pytest.fixture
def dialogs() -> list[str]:
    return []


@pytest.fixture
def page(browser: Browser, replica: Replica, dialogs: list[str]) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=replica.url)
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    # A blocked inline style or script shows as a console error naming the policy.
    opened.on(
        "console",
        lambda message: (
            errors.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    opened.on("dialog", on_dialog)
    opened.goto(f"{replica.url}/console")
    yield opened
    context.close()
    assert errors == []


def sign_in(page: Page, key: str = ADMIN_KEY) -> None:
    page.fill("#admin-key", key)
    page.click("#login button[type=submit]")


def signed_in(page: Page) -> None:
    sign_in(page)
    expect(page.locator("#stat-rps")).to_be_visible()


def admin(replica: Replica, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        replica.url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def new_key(page: Page, fields: dict[str, str]) -> None:
    page.click("#tab-keys")
    page.click("#new-key")
    for name, value in fields.items():
        page.fill(f"#field-{name}", value)
    page.click("#save-key")


def row(page: Page, key_id: str) -> Any:
    return page.locator("#keys-table tbody tr").filter(has=page.locator(".key-id", has_text=key_id))


def sdk(replica: Replica, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{replica.url}/v1", api_key=key, max_retries=0)


def test_a_wrong_admin_key_is_refused(page: Page) -> None:
    sign_in(page, "sk-not-the-admin-key-42")
    error = page.locator("#login-error")
    expect(error).to_contain_text("Incorrect admin key provided")
    assert "sk-not-the-admin-key-42" not in page.content()
    expect(page.locator("#tab-keys")).to_have_count(0)
    signed_in(page)  # the right key still opens it


def test_a_key_made_in_the_console_serves_the_sdk_until_disabled(
    page: Page, replica: Replica
) -> None:
    signed_in(page)
    new_key(page, {"id": "console-e2e", "project": "web-app", "budget_usd": "25"})
    secret = page.locator("#new-secret").input_value()
    register_secret(secret)
    assert secret.startswith("sk-gw-")
    page.click("#copy-secret")
    expect(page.locator("#copy-secret")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    expect(row(page, "console-e2e")).to_contain_text("active")

    with sdk(replica, secret) as client:
        for model in ("mock-model", "mock-model", "mock-mini"):
            answer = client.responses.create(model=model, input="Hello from the console test")
            assert answer.status == "completed"

    # The usage shows up (settled in the background) in the chart and the table.
    page.click("#tab-usage")
    page.select_option("#usage-group", "key")
    deadline = time.monotonic() + 10
    while "console-e2e" not in (page.locator("#usage-table").text_content() or ""):
        assert time.monotonic() < deadline, "the key's usage never showed"
        page.click("#usage-show")
        page.wait_for_timeout(200)
    expect(page.locator("#chart-groups svg text", has_text="console-e2e")).to_have_count(1)
    expect(page.locator("#chart-days svg rect.bar")).not_to_have_count(0)
    page.select_option("#usage-group", "model")
    page.click("#usage-show")
    expect(page.locator("#usage-table")).to_contain_text("mock-mini")
    shot = page.locator("body").screenshot()
    target = os.environ.get("CONSOLE_SCREENSHOT")
    if target:
        Path(target).write_bytes(shot)

    # Its budget, against its limit, on the keys page.
    page.click("#tab-keys")
    expect(row(page, "console-e2e").locator(".budget")).to_contain_text("/ $25.00 per month")
    expect(row(page, "console-e2e").locator(".budget")).not_to_contain_text("$0.00 /")

    row(page, "console-e2e").locator("[data-action=disable]").click()
    expect(row(page, "console-e2e")).to_contain_text("disabled")
    with sdk(replica, secret) as client, pytest.raises(openai.AuthenticationError):
        client.responses.create(model="mock-model", input="Hello again")

    row(page, "console-e2e").locator("[data-action=delete]").click()
    row(page, "console-e2e").locator("[data-action=delete]").click()  # confirm
    expect(row(page, "console-e2e")).to_have_count(0)
    assert admin(replica, "GET", "/admin/keys/console-e2e")[0] == 404


def test_forms_show_the_admin_apis_own_messages(page: Page, replica: Replica) -> None:
    signed_in(page)
    new_key(page, {"id": "limits-e2e", "rpm": "0"})
    status, answer = admin(replica, "POST", "/admin/keys", {"id": "limits-e2e", "rpm": 0})
    assert status == 400
    expect(page.locator("#form-error")).to_have_text(answer["error"]["message"])
    expect(page.locator("#field-rpm")).to_have_attribute("aria-invalid", "true")

    page.fill("#field-rpm", "120")
    page.fill("#field-models", "mock-*, gpt-4.1")
    page.click("#save-key")
    expect(page.locator("#secret-panel")).to_be_visible()
    register_secret(page.locator("#new-secret").input_value())
    expect(row(page, "limits-e2e")).to_contain_text("120 rpm")

    row(page, "limits-e2e").locator("[data-action=edit]").click()
    page.fill("#field-tpm", "lots")
    page.click("#save-key")
    status, answer = admin(replica, "PATCH", "/admin/keys/limits-e2e", {"tpm": "lots"})
    assert status == 400
    expect(page.locator("#form-error")).to_have_text(answer["error"]["message"])
    page.fill("#field-tpm", "50000")
    page.fill("#field-regions", "eu")
    page.fill("#field-rpm", "")  # cleared: back to no limit
    page.click("#save-key")
    expect(row(page, "limits-e2e")).to_contain_text("50,000 tpm")
    expect(row(page, "limits-e2e")).not_to_contain_text("rpm")
    status, key = admin(replica, "GET", "/admin/keys/limits-e2e")
    assert (key["tpm"], key["rpm"], key["regions"]) == (50000, None, ["eu"])
    assert key["models"] == ["mock-*", "gpt-4.1"]


def test_hostile_names_are_shown_as_text(page: Page, dialogs: list[str]) -> None:
    signed_in(page)
    # Ids and projects are names: the gateway refuses these, and the form says why.
    new_key(page, {"id": XSS_SCRIPT, "project": XSS_IMG})
    expect(page.locator("#form-error")).to_contain_text("Invalid 'id'")
    page.fill("#field-id", "hostile-e2e")
    page.click("#save-key")
    expect(page.locator("#form-error")).to_contain_text("Invalid 'project'")
    page.fill("#field-id", "hostile-e2e")
    page.fill("#field-project", "")
    page.fill("#field-models", f"{XSS_IMG}, {XSS_SCRIPT}")
    page.fill("#field-regions", XSS_IMG)
    page.click("#save-key")
    expect(page.locator("#secret-panel")).to_be_visible()
    register_secret(page.locator("#new-secret").input_value())
    hostile = row(page, "hostile-e2e")
    expect(hostile.locator(".chip", has_text=XSS_IMG)).to_have_count(2)
    expect(hostile.locator(".chip", has_text=XSS_SCRIPT)).to_have_count(1)
    assert page.locator("#keys-table img, #keys-table script").count() == 0
    page.click("#tab-usage")
    page.fill("#usage-project", XSS_IMG)
    page.click("#usage-show")
    expect(page.locator("#usage-table")).to_contain_text("No usage")
    page.wait_for_timeout(300)  # time for an injected handler to fire, were there one
    assert dialogs == []
    assert page.locator("img[src=x]").count() == 0


def test_live_state_names_the_replica(page: Page, replica: Replica) -> None:
    signed_in(page)
    assert replica.proc is not None
    expect(page.locator("#replica")).to_contain_text(f"pid {replica.proc.pid}")
    note = page.locator("#stat-rps .stat-note")
    expect(note).to_contain_text("since start")
    before = int((note.text_content() or "").split()[0].replace(",", ""))
    with sdk(replica, "sk-ops-0123456789") as client:
        client.responses.create(model="mock-model", input="count me")
    # The page refreshes by itself, every 2 seconds.
    expect(note).to_have_text(f"{before + 1:,} since start")
    expect(page.locator("#stat-queued .stat-value")).to_have_text("0")
    page.click("#sign-out")
    expect(page.locator("#login-error")).to_contain_text("Locked")
    expect(page.locator("#tab-keys")).to_have_count(0)


def test_the_admin_key_is_kept_in_memory_only(page: Page) -> None:
    signed_in(page)
    page.click("#tab-keys")
    expect(page.locator("#keys-table")).to_be_visible()
    stored = page.evaluate(
        "[localStorage.length, sessionStorage.length, document.cookie, location.href]"
    )
    assert stored[:3] == [0, 0, ""]
    assert ADMIN_KEY not in stored[3]
    page.reload()  # a new page knows no key
    expect(page.locator("#admin-key")).to_be_visible()
