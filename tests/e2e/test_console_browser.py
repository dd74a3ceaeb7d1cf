"""The web console in a real browser: Debian's chromium driven by Playwright.

One daemon with the console on a free loopback port; scripts are deployed through
the admin API (as scriptctl does), then a person's walk: sign in with the link
`scriptctl console` prints, the list, a script's tabs, a key created and copied, a
call with that key and one with the endpoint's cURL as copied, its execution, the
executions' filters, the Test tab (a function, and a code step), the Monitoring tab's
charts, undeploy and delete through the Actions menu.
Then the refusals: a used and an expired link, a POST without the CSRF token, a
session after sign-out. Screenshots of each page go to test-artifacts/console/.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.helpers import (
    REPO,
    TINY_PROFILES,
    DaemonProcess,
    free_port,
    make_zip,
    running_daemon,
)

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "test-artifacts" / "console"
GREET = (
    "def greet(name='world'):\n"
    "    print('greeting', name)\n"
    "    return {'message': 'Hello, ' + name + '!'}\n"
)
BROKEN = "raise RuntimeError('the main file fails at import')\n"
STEP_MAIN = "outputs.greeting = 'Hello, ' + inputs.name\n"
STEP_TOML = '[inputs]\nname = "s"\n\n[outputs]\ngreeting = "s"\n'


def _playwright() -> Any:
    require(CHROMIUM.exists(), "needs Debian's chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "needs playwright (pip install playwright; no browser download)")
    return sync_playwright


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, int]]:
    port = free_port()
    config = {
        **TINY_PROFILES,
        "console": {"enabled": True, "listen": f"127.0.0.1:{port}"},
        "autoscale": {"sample_s": 0.5},  # the Monitoring tab's replica samples
    }
    with running_daemon(tmp_path_factory.mktemp("console"), config) as daemon:
        admin = daemon.client()
        admin.create("hello", make_zip({"main.py": GREET}), deploy=True, description="Greets")
        admin.create("broken", make_zip({"main.py": BROKEN}), deploy=True)
        admin.create("draft-one", make_zip({"main.py": GREET}), description="Not yet")
        admin.call("PUT", "/v1/secrets/API_TOKEN", {"value": "never-shown"})
        assert admin.wait_status("hello")["status"] == "Deployed"
        assert admin.wait_status("broken")["status"] == "Deployment Failed"
        yield daemon, port


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _playwright()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, console: tuple[DaemonProcess, int]) -> Iterator[Any]:
    _, port = console
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=_base(port))
    context.set_default_timeout(20_000)
    page = context.new_page()
    yield page
    context.close()


def _base(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def sign_in_link(daemon: DaemonProcess) -> str:
    """What `scriptctl console` prints: the last word is the link."""
    out = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "--socket", str(daemon.socket), "console"],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    url = out.stdout.split()[-1]
    assert url.startswith("http://127.0.0.1:") and "/signin?token=" in url, out.stdout
    return url


def sign_in(page: Any, daemon: DaemonProcess) -> None:
    """Open the link: its page asks to sign in; only that POST spends the token."""
    page.goto(sign_in_link(daemon))
    assert "Sign in to the scriptd console as root" in page.locator("main").inner_text()
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/$"))


def validate(page: Any) -> None:
    """Validate on General Details: the form is sent with its upload's progress, and
    the Validate page's content replaces this one's."""
    page.get_by_role("button", name="Validate").click()
    page.wait_for_url(re.compile(r".*/import/validate$"))
    page.get_by_role("heading", name="Validate", exact=True).wait_for()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def expect_flash(page: Any, text: str) -> None:
    """Wait (with Playwright's deadline) until the page's messages say `text`."""
    from playwright.sync_api import expect

    expect(page.locator("#messages")).to_contain_text(text)


def call_with_key(gateway_port: int, key: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{gateway_port}/v1/scripts/hello/functions/greet",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return dict(json.loads(answer.read()))


def reload_until(page: Any, locator: str, timeout: float = 30) -> Any:
    """Reload until `locator` is on the page (records are written in batches)."""
    deadline = time.monotonic() + timeout
    while page.locator(locator).count() == 0:
        assert time.monotonic() < deadline, f"{locator} not on {page.url} after {timeout} s"
        page.reload()
    return page.locator(locator)


def run_curl_snippet(snippet: str, key: str) -> None:
    """Run the console's cURL snippet with sh, the key filled in: the call answers."""
    require(shutil.which("curl") is not None, "curl is not installed")
    assert "YOUR_API_KEY" in snippet and snippet.startswith("curl ")
    ran = subprocess.run(
        ["sh", "-c", snippet.replace("YOUR_API_KEY", key)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(ran.stdout) == {"result": {"message": "Hello, world!"}}, ran.stderr


def filter_the_executions(page: Any) -> None:
    """The filters by function and time range, with the form (no JavaScript needed)."""
    page.get_by_role("link", name="All executions").click()
    page.get_by_label("Function").select_option("greet")
    page.get_by_label("From (UTC)").fill("2000-01-01T00:00")
    page.get_by_role("button", name="Filter").click()
    assert "function=greet" in page.url and "from=2000-01-01T00%3A00" in page.url
    assert page.locator("table.executions tbody tr").count() == 2  # the curl one and Ada's
    page.get_by_label("To (UTC)").fill("2000-01-02T00:00")
    page.get_by_role("button", name="Filter").click()
    assert "No executions match these filters" in page.locator("main").inner_text()
    page.get_by_role("link", name="Clear filters").click()
    assert page.locator("table.executions tbody tr").count() == 2


def try_greet_in_the_test_tab(page: Any, port: int) -> None:
    """The Test tab: typed inputs, the answer, its execution; a JSON body refused."""
    page.get_by_role("link", name="Test", exact=True).click()
    page.get_by_label("name (string)").fill("Grace")
    page.get_by_role("button", name="Call", exact=True).click()
    answer = page.locator("section.answer")
    assert '"message": "Hello, Grace!"' in answer.locator("#answer-body").inner_text()
    text = answer.inner_text()
    assert "200 (ok)" in text and "greeting Grace" in text and "No outbound HTTP" in text
    shot(page, "21-test")
    link = answer.locator("a[href*='/executions/']")
    href = link.get_attribute("href")
    deadline = time.monotonic() + 30  # records are written in batches
    while page.goto(_base(port) + href).status != 200:
        assert time.monotonic() < deadline, f"{href} not recorded after 30 s"
    assert "admin:root" in page.locator("main").inner_text()
    page.get_by_role("link", name="Test", exact=True).click()
    page.get_by_label("JSON body", exact=True).fill('["not", "an object"]')
    page.get_by_role("button", name="Call with this body").click()
    assert "must be a JSON object" in page.get_by_role("alert").inner_text()


def monitoring_tab_draws_the_charts(page: Any) -> None:
    """Four charts, each with its words and its table; samples of the replicas."""
    page.get_by_role("link", name="Monitoring").click()
    charts = page.locator("svg.chart[role='img']")
    assert charts.count() == 4
    assert (
        "3 calls in the last hour" in charts.first.locator("desc").text_content()
    )  # curl, Ada, Grace
    assert page.locator("table.calls-data tbody tr").count() >= 1
    reload_until(page, "table.scaling-data tbody tr")
    assert "Between 1 and 1 replicas" in page.locator("svg.chart desc").nth(2).text_content()
    shot(page, "22-monitoring")


def test_walk_through_the_console(page: Any, console: tuple[DaemonProcess, int]) -> None:
    from playwright.sync_api import expect

    daemon, port = console
    sign_in(page, daemon)
    assert page.url == _base(port) + "/"
    cookie = next(c for c in page.context.cookies() if c["name"] == "scriptd_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]

    # The list: the seed's columns, statuses, a failed status's reason on focus.
    headers = page.locator("table.scripts thead th").all_inner_texts()
    assert headers == ["Script Name", "Status", "Added by", "Updated on", "Actions"]
    row = page.locator("tr", has=page.get_by_role("link", name="hello", exact=True))
    assert row.locator(".badge").inner_text() == "Deployed"
    assert "root" in row.inner_text()  # added by the unix user of the admin socket
    failed = page.locator("tr", has=page.get_by_role("link", name="broken")).locator(".badge")
    assert failed.inner_text().startswith("Deployment Failed")
    shot(page, "01-list")
    failed.focus()
    tip = page.get_by_role("tooltip")
    assert tip.is_visible() and "fails at import" in tip.inner_text()
    shot(page, "01-list-failed-reason")

    # The Actions menu offers what each status allows.
    def menu_items(name: str) -> list[str]:
        r = page.locator("tr", has=page.get_by_role("link", name=name, exact=True))
        r.get_by_text("Actions").click()
        items = r.locator(".menu li").all_inner_texts()
        r.get_by_text("Actions").click()
        return items

    assert menu_items("hello") == ["Undeploy", "Export"]
    assert menu_items("draft-one") == ["Deploy", "Export", "Delete"]
    assert menu_items("broken") == ["Deploy", "Export", "Delete"]

    # Search by name (htmx swaps the table; the form works without JavaScript too).
    page.get_by_label("Search by script name").fill("dra")
    expect(page.locator("table.scripts tbody tr")).to_have_count(1)
    page.get_by_label("Search by script name").fill("")
    expect(page.locator("table.scripts tbody tr")).to_have_count(3)

    # The script's tabs.
    page.get_by_role("link", name="hello", exact=True).click()
    assert page.get_by_role("heading", name="General Details").is_visible()
    assert "Greets" in page.locator("main").inner_text()
    shot(page, "02-overview")
    page.get_by_role("link", name="Export").click()  # the export's page follows it
    expect(page.locator("#export-status")).to_contain_text("Export complete")
    shot(page, "02-export")
    assert page.locator("#export-bar").get_attribute("value") == "100"
    with page.expect_download() as download:
        page.get_by_role("link", name="Download hello.zip").click()
    assert download.value.suggested_filename == "hello.zip"
    with zipfile.ZipFile(download.value.path()) as exported:
        assert exported.read("main.py").decode() == GREET
    page.get_by_role("link", name="Back to hello").click()
    page.get_by_role("link", name="Deployment History").click()
    assert page.locator("table.history .check").count() == 1
    assert "hello-v1" in page.locator("table.history").inner_text()
    page.get_by_role("link", name="Edit the name of v1").click()
    page.get_by_label("New name of v1").fill("first-release")
    page.get_by_role("button", name="Confirm").click()
    expect_flash(page, "renamed to first-release")
    assert "first-release" in page.locator("table.history").inner_text()
    shot(page, "03-history")
    page.get_by_role("link", name="Endpoint").click()
    curl = page.locator("pre[id$='-curl']").first.inner_text()
    assert "curl" in curl and "/v1/scripts/hello/functions/greet" in curl
    page.get_by_role("button", name="Copy").first.click()
    expect_flash(page, "Copied to clipboard")
    assert "/v1/scripts/hello/functions/greet" in page.evaluate("navigator.clipboard.readText()")
    shot(page, "04-endpoint")

    # A key, shown once, copied and closed.
    page.get_by_role("link", name="API Keys").click()
    page.get_by_label("Key name").fill("browser key")
    page.get_by_role("button", name="Generate Key").click()
    dialog = page.get_by_role("dialog")
    assert "shown only once" in dialog.inner_text()
    key = page.get_by_label("Secret key").input_value()
    assert key.startswith("sk_")
    shot(page, "05-new-key")
    # The page's URL is already .../keys (the form posted there): wait for the load
    # that Copy and Close starts once the key is on the clipboard.
    with page.expect_navigation(url=re.compile(r".*/scripts/hello/keys$")):
        page.get_by_role("link", name="Copy and Close").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert page.evaluate("navigator.clipboard.readText()") == key
    assert "browser key" in page.locator("table.keys").inner_text()
    assert key not in page.content()  # never shown again

    # A second key with the default name; search; delete it with its confirmation.
    page.get_by_label("Key name").fill("Secret Key")
    page.get_by_role("button", name="Generate Key").click()
    page.get_by_role("link", name="Close", exact=True).click()
    page.get_by_label("Search keys by name").fill("browser")
    page.get_by_role("button", name="Search").click()
    assert page.locator("table.keys tbody tr").all_inner_texts()[0].startswith("browser key")
    assert page.locator("table.keys tbody tr").count() == 1
    page.get_by_label("Search keys by name").fill("")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Delete key Secret Key").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect_flash(page, "API key Secret Key deleted")
    assert page.locator("table.keys tbody tr").count() == 1

    # The endpoint's cURL as the console copies it, run as it is with the key.
    page.get_by_role("link", name="Endpoint").click()
    page.locator("button[data-copy$='-curl']").first.click()
    expect_flash(page, "Copied to clipboard")
    run_curl_snippet(page.evaluate("navigator.clipboard.readText()"), key)

    # A call with the copied key, then its record.
    answer = call_with_key(daemon.port, key, {"name": "Ada"})
    assert answer == {"result": {"message": "Hello, Ada!"}}
    page.get_by_role("link", name="Executions").click()
    # Both calls' records (the cURL snippet's and this one): batches may bring them apart.
    reload_until(page, "table.executions tbody tr >> nth=1")
    assert "browser key" in page.locator("table.executions").inner_text()
    shot(page, "06-executions")
    page.locator("table.executions tbody tr a").first.click()
    text = page.locator("main").inner_text()
    assert '"name": "Ada"' in text and "Hello, Ada!" in text and "greeting Ada" in text
    shot(page, "07-execution")
    filter_the_executions(page)
    try_greet_in_the_test_tab(page, port)
    monitoring_tab_draws_the_charts(page)

    # Undeploy through the menu, with its confirmation.
    page.get_by_role("link", name="Manage Custom Scripts").first.click()
    row = page.locator("tr", has=page.get_by_role("link", name="hello", exact=True))
    row.get_by_text("Actions").click()
    row.get_by_role("link", name="Undeploy").click()
    dialog = page.get_by_role("dialog")
    assert dialog.get_by_role("heading", name="Undeploy custom script").is_visible()
    shot(page, "08-undeploy-dialog")
    dialog.get_by_role("button", name="Undeploy").click()
    expect_flash(page, "Your custom script has been undeployed successfully")
    row = page.locator("tr", has=page.get_by_role("link", name="hello", exact=True))
    assert row.locator(".badge").inner_text() == "Ready to Deploy"
    try:
        call_with_key(daemon.port, key, {"name": "Ada"})
        raise AssertionError("an undeployed script answered")
    except urllib.error.HTTPError as exc:
        assert exc.code == 503

    # Delete asks for the name: a wrong one changes nothing.
    row.get_by_text("Actions").click()
    row.get_by_role("link", name="Delete").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("to confirm").fill("hell")
    shot(page, "09-delete-dialog")
    dialog.get_by_role("button", name="Delete").click()
    expect_flash(page, "does not match")
    page.get_by_role("dialog").get_by_label("to confirm").fill("hello")
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect_flash(page, "has been deleted")
    assert page.get_by_role("link", name="hello", exact=True).count() == 0
    assert daemon.client().get("/v1/scripts?search=hello")["scripts"] == []


AMOUNT_STEP_TOML = '[inputs]\nname = "s"\namount = "n"\n\n[outputs]\ngreeting = "s"\ntotal = "n"\n'
AMOUNT_STEP_MAIN = (
    'outputs.log(f"greeting {inputs.name}")\n'
    'outputs.greeting = f"Hello, {inputs.name}!"\n'
    "outputs.total = inputs.amount\n"
)


def test_the_test_tab_runs_a_code_step_with_typed_inputs(
    page: Any, console: tuple[DaemonProcess, int]
) -> None:
    daemon, _ = console
    admin = daemon.client()
    files = {"main.py": AMOUNT_STEP_MAIN, "step.toml": AMOUNT_STEP_TOML}
    admin.create("stepper", make_zip(files), deploy=True)
    assert admin.wait_status("stepper")["status"] == "Deployed"
    sign_in(page, daemon)
    page.get_by_role("link", name="stepper").click()
    page.get_by_role("link", name="Test", exact=True).click()
    page.get_by_label("name (s)").fill("Lin")
    page.get_by_label("amount (n)").fill("12.50")
    page.get_by_role("button", name="Run", exact=True).click()
    answer = page.locator("section.answer")
    body = json.loads(answer.locator("#answer-body").inner_text())
    assert body["outputs"] == {"greeting": {"s": "Hello, Lin!"}, "total": {"n": 12.5}}
    assert '"n": 12.50' in answer.locator("#answer-body").inner_text()  # the digits typed
    assert "200 (ok)" in answer.inner_text() and "greeting Lin" in answer.inner_text()
    shot(page, "23-test-step")
    page.get_by_label("amount (n)").fill("twelve")
    page.get_by_role("button", name="Run", exact=True).click()
    assert "amount = 'twelve' is not a number" in page.get_by_role("alert").inner_text()
    admin.call("POST", "/v1/scripts/stepper/undeploy")
    admin.call("DELETE", "/v1/scripts/stepper")


def test_a_used_link_and_a_post_without_csrf_are_refused(
    page: Any, console: tuple[DaemonProcess, int]
) -> None:
    daemon, port = console
    link = sign_in_link(daemon)
    page.goto(link)  # a preview or a prefetch of the link does not spend it
    page.goto(link)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(_base(port) + "/")
    answer = page.goto(link)
    assert answer.status == 403 and "used already" in page.locator("main").inner_text()
    page.goto(_base(port) + "/")  # still signed in from the first use
    assert page.get_by_role("heading", name="Manage Custom Scripts").is_visible()
    post = """async ([url, token]) => {
        const body = new URLSearchParams({back: "/"});
        if (token) body.set("csrf_token", token);
        const r = await fetch(url, {method: "POST", body});
        return [r.status, await r.text()];
    }"""
    url = _base(port) + "/scripts/draft-one/deploy"
    status, text = page.evaluate(post, [url, None])
    assert status == 403 and "CSRF" in text
    status, _ = page.evaluate(post, [url, "not-the-token"])
    assert status == 403
    assert daemon.client().script("draft-one")["status"] == "Draft"
    upload = """async (url) => {
        const body = new FormData();
        body.set("name", "sneaky");
        body.set("project", new Blob(["x"]), "p.zip");
        const r = await fetch(url, {method: "POST", body});
        return r.status;
    }"""
    assert page.evaluate(upload, _base(port) + "/import/general") == 403
    shot(page, "10-list-after-refusals")


def test_import_wizard_in_order_with_a_fix_then_save_as_draft(
    page: Any, console: tuple[DaemonProcess, int], tmp_path: Path
) -> None:
    daemon, port = console
    broken, good = tmp_path / "broken.zip", tmp_path / "project.zip"
    step = tmp_path / "step.zip"
    broken.write_bytes(make_zip({"main.py": ""}))
    step.write_bytes(make_zip({"main.py": STEP_MAIN, "step.toml": STEP_TOML}))
    good.write_bytes(make_zip({"main.py": GREET}))
    sign_in(page, daemon)
    page.get_by_role("link", name="+ Import new").first.click()
    page.goto(_base(port) + "/import/review")  # no skipping: back to the first open step
    assert page.url.endswith("/import/general")

    page.get_by_label("Script Name").fill("wizard-app")
    page.get_by_label("Description").fill("Made in the wizard")
    # The versions listed are the chosen base language's.
    page.get_by_label("Base Language").select_option("javascript")
    assert page.locator("#version option[data-language=python]").first.is_disabled()
    page.get_by_label("Base Language").select_option("python")
    assert page.locator("#version option[data-language=javascript]").first.is_disabled()
    assert page.locator("#version option[data-language=python]").first.is_enabled()
    page.get_by_role("radio", name="Step").check()  # a code step, but the project has no step.toml
    page.get_by_label("Project File").set_input_files(str(broken))
    watch_progress = """() => { window.uploadSeen = [];
        const bar = document.getElementById("upload-progress");
        new MutationObserver(() => window.uploadSeen.push(bar.value))
            .observe(bar, {attributes: true}); }"""
    page.evaluate(watch_progress)
    validate(page)
    assert 100 in page.evaluate("window.uploadSeen")  # sent with its progress shown
    findings = page.locator(".findings").inner_text()
    assert "Error" in findings and "main.py" in findings and "How to fix" in findings
    assert "not a code step" in findings and "step.toml" in findings
    sample = page.get_by_role("link", name="Download sample project").get_attribute("href")
    assert sample == "/samples/python?kind=step"  # the sample of the kind chosen
    with zipfile.ZipFile(io.BytesIO(page.request.get(_base(port) + sample).body())) as z:
        assert "step.toml" in z.namelist()
    assert page.get_by_role("link", name="Download sample project").is_visible()
    assert page.get_by_role("button", name="Next").count() == 0
    shot(page, "13-wizard-validate-error")
    # A code step: Runtime Settings show what its step.toml declares.
    page.get_by_role("link", name="Back to General Details").click()
    page.get_by_label("Project File").set_input_files(str(step))
    validate(page)
    assert "a code step with 1 input(s) and 1 output(s)" in page.locator("main").inner_text()
    page.get_by_role("button", name="Next").click()
    inputs = page.get_by_role("table", name="Declared inputs").inner_text()
    assert "name" in inputs and "s" in inputs
    assert "greeting" in page.get_by_role("table", name="Declared outputs").inner_text()
    assert page.get_by_label("Concurrency").is_disabled()  # a step runs one at a time
    assert page.get_by_label("Concurrency").input_value() == "1"
    page.get_by_role("link", name="1. General Details").click()
    page.get_by_role("radio", name="Functions").check()
    page.get_by_label("Project File").set_input_files(str(good))
    validate(page)
    assert "The project file is valid: functions greet" in page.locator("main").inner_text()
    page.get_by_role("button", name="Next").click()

    page.get_by_label("Key 1").fill("GREETING")
    page.get_by_label("Value 1").fill("hi")
    page.get_by_role("button", name="+ Add").click()
    page.get_by_label("Key 2").fill("TOKEN")
    page.get_by_label("Value 2").fill("s3cret-value")
    assert page.get_by_label("Value 2").get_attribute("type") is None  # shown as typed
    page.get_by_label("Secret 2").check()
    assert page.get_by_label("Value 2").get_attribute("type") == "password"  # hidden at once
    page.get_by_label("Execution Timeout").fill("45")
    page.get_by_label("Concurrency").fill("8")
    page.get_by_label("Workers per Replica").fill("2")
    page.get_by_label("API_TOKEN").check()  # an integration secret granted
    shot(page, "14-wizard-runtime")
    page.get_by_role("button", name="Next").click()

    assert page.get_by_label("Average Compute Utilization").is_disabled()  # min = max
    page.get_by_label("Max Replicas").fill("2")
    assert page.get_by_label("Average Compute Utilization").is_enabled()
    page.get_by_label("Average Compute Utilization").fill("60")
    shot(page, "15-wizard-resources")
    page.get_by_role("button", name="Next").click()

    main = page.locator("main").inner_text()
    assert "GREETING=hi" in main and "TOKEN=********" in main and "s3cret" not in main
    assert "API_TOKEN" in main and "never-shown" not in main
    assert "8 per worker" in main
    page.get_by_role("link", name="Edit Runtime Settings").click()  # one click back
    assert page.get_by_label("Key 2").input_value() == "TOKEN"
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Deploy").click()  # terms not accepted
    assert "Accept the Terms and Conditions" in page.get_by_role("alert").inner_text()
    shot(page, "16-wizard-review")
    page.get_by_role("button", name="Save as Draft").click()
    assert page.url.endswith("/scripts/wizard-app")
    expect_flash(page, "saved as a draft")
    script = daemon.client().script("wizard-app")
    assert script["status"] == "Draft" and script["added_by"] == "root"
    env = {e["key"]: e for e in script["settings"]["env"]}
    assert env["GREETING"]["value"] == "hi" and env["TOKEN"]["secret"]
    assert script["settings"]["timeout_s"] == 45
    assert (script["settings"]["concurrency"], script["settings"]["workers_per_replica"]) == (8, 2)
    assert (script["resources"]["max_replicas"], script["resources"]["cpu_target"]) == (2, 60)
    assert script["settings"]["secrets"] == ["API_TOKEN"]

    # The Draft opens in the wizard with what it saved; a Draft may even be renamed.
    page.get_by_role("link", name="Edit configuration").click()
    assert page.get_by_label("Description").input_value() == "Made in the wizard"
    page.get_by_label("Script Name").fill("wizard-app2")
    page.get_by_label("Description").fill("Edited as a draft")
    validate(page)
    assert "The current project file is kept" in page.locator("main").inner_text()
    page.get_by_role("button", name="Next").click()
    assert page.get_by_label("Key 2").input_value() == "TOKEN"
    assert page.get_by_label("API_TOKEN").is_checked()
    page.get_by_role("button", name="Next").click()
    assert page.get_by_label("Max Replicas").input_value() == "2"
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Save as Draft").click()
    expect_flash(page, "saved as a draft")
    edited = daemon.client().script("wizard-app2")
    assert edited["description"] == "Edited as a draft" and edited["status"] == "Draft"
    assert edited["settings"]["env"] == script["settings"]["env"]  # the secret kept
    assert edited["settings"]["secrets"] == ["API_TOKEN"]
    daemon.client().call("DELETE", "/v1/scripts/wizard-app2")


def test_deploy_from_the_overview_redeploy_then_undeploy_and_delete_everything(
    page: Any, console: tuple[DaemonProcess, int], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    daemon, port = console
    sign_in(page, daemon)
    page.get_by_role("link", name="draft-one").click()
    page.get_by_role("link", name="Deployment History").click()
    assert "no deployment history yet" in page.locator("main").inner_text()
    shot(page, "03-history-draft")
    page.get_by_role("link", name="Deploy custom script").click()  # the seed: the wizard
    assert page.get_by_label("Script Name").input_value() == "draft-one"
    page.goto(_base(port) + "/scripts/draft-one")
    page.get_by_role("link", name="Endpoint").click()
    assert "endpoint is not activated" in page.locator("main").inner_text()
    page.get_by_role("link", name="Deploy", exact=True).first.click()
    page.get_by_role("dialog").get_by_role("button", name="Deploy").click()
    expect_flash(page, "Deploying draft-one")
    watched = page.locator(".phases").count() == 1  # unless the deploy was done already
    if watched:
        shot(page, "17-deploying")
    # The status refreshes itself (htmx) until the deploy is done.
    expect(page.locator(".heading .badge")).to_have_text("Deployed", timeout=180_000)
    if watched:
        expect_flash(page, "Custom script deployed successfully - API Endpoint Available")
    assert daemon.client().script("draft-one")["deployment"]["deployed_by"] == "root"

    # Redeploy: the wizard with the current configuration, name and language locked.
    second = tmp_path / "v2.zip"
    second.write_bytes(make_zip({"main.py": GREET + "\ndef bye():\n    return 'bye'\n"}))
    page.get_by_role("link", name="Redeploy").click()
    assert page.get_by_label("Script Name").is_disabled()
    assert page.get_by_label("Script Name").input_value() == "draft-one"
    page.get_by_label("Description").fill("Second version")
    page.get_by_label("Project File").set_input_files(str(second))
    validate(page)
    assert "functions greet, bye" in page.locator("main").inner_text()
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Next").click()
    assert page.get_by_role("button", name="Save as Draft").count() == 0
    page.get_by_label("I accept the Terms and Conditions").check()
    page.get_by_role("button", name="Deploy").click()
    assert page.url.endswith("/scripts/draft-one")
    expect(page.get_by_text("Second version")).to_be_visible()
    expect(page.locator(".heading .badge")).to_have_text("Deployed", timeout=180_000)
    page.get_by_role("link", name="Deployment History").click()
    expect(page.locator("table.history tbody tr")).to_have_count(2)
    assert "draft-one-v2" in page.locator("table.history .check >> xpath=..").inner_text()
    assert daemon.client().script("draft-one")["functions"] == ["greet", "bye"]
    page.get_by_role("link", name="Overview").click()
    page.get_by_role("link", name="Proceed to Undeploy").click()
    page.get_by_role("dialog").get_by_role("button", name="Undeploy").click()
    expect_flash(page, "Your custom script has been undeployed successfully")
    # Ready to Deploy: its configuration is edited in the wizard, the name locked.
    page.get_by_role("link", name="Edit configuration").click()
    assert page.get_by_label("Script Name").is_disabled()
    page.get_by_label("Description").fill("Third description")
    validate(page)
    for _ in range(3):
        page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Save changes").click()
    expect_flash(page, "The changes to draft-one have been saved")
    assert daemon.client().script("draft-one")["description"] == "Third description"
    page.get_by_role("link", name="Notifications").click()
    outbox = page.locator("table.outbox").inner_text()
    assert "Your custom script has been undeployed successfully" in outbox
    assert "draft-one" in outbox
    shot(page, "18-notifications")
    page.get_by_role("link", name="Account").click()
    assert "Total allocation" in page.locator("main").inner_text()
    page.get_by_label("Total allocation (credits)").fill("500")
    page.get_by_role("button", name="Set allocation").click()
    expect_flash(page, "The total allocation is now 500 credits")
    assert daemon.client().get("/v1/account")["allocation"] == 500
    page.get_by_label("Period").select_option("all")
    page.get_by_role("button", name="Show").click()
    assert page.url.endswith("/account?period=all")
    shot(page, "19-account")
    data = tmp_path / "prices.csv"
    data.write_text("item,price\ntea,3\n")
    page.get_by_role("link", name="Uploads").click()
    page.get_by_label("File", exact=True).set_input_files(str(data))
    page.get_by_role("button", name="Upload").click()
    expect_flash(page, "prices.csv uploaded (17 bytes)")
    assert (daemon.state_dir / "files" / "prices.csv").read_text() == "item,price\ntea,3\n"
    page.get_by_role("button", name="Upload").click()  # no file chosen: the browser asks
    page.get_by_label("File", exact=True).set_input_files(str(data))
    page.get_by_role("button", name="Upload").click()  # the name is taken, no replace
    expect_flash(page, "is already uploaded")
    shot(page, "20-uploads")
    page.get_by_role("link", name="Delete prices.csv").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect_flash(page, "prices.csv deleted")
    assert not (daemon.state_dir / "files" / "prices.csv").exists()
    page.goto(_base(port) + "/scripts/draft-one")
    page.get_by_role("link", name="Proceed to Delete").click()
    page.get_by_role("dialog").get_by_label("to confirm").fill("draft-one")
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect_flash(page, "has been deleted")
    row = page.locator("tr", has=page.get_by_role("link", name="broken"))
    row.get_by_text("Actions").click()
    row.get_by_role("link", name="Delete").click()
    page.get_by_role("dialog").get_by_label("to confirm").fill("broken")
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    assert "No custom scripts yet" in page.locator("main").inner_text()
    assert "scriptctl up" in page.locator(".empty").inner_text()
    shot(page, "12-empty")


def test_sign_out_ends_the_session(page: Any, console: tuple[DaemonProcess, int]) -> None:
    daemon, port = console
    sign_in(page, daemon)
    cookie = next(c for c in page.context.cookies() if c["name"] == "scriptd_console")
    page.get_by_role("button", name="Sign out").click()
    assert "You are signed out" in page.locator("main").inner_text()
    page.context.add_cookies([cookie])  # the old session's cookie, sent again
    answer = page.goto(_base(port) + "/")
    assert answer.status == 401 and "not signed in" in page.locator("main").inner_text()


def test_an_expired_link_is_refused(browser: Any, tmp_path: Path) -> None:
    port = free_port()
    config = {"console": {"enabled": True, "listen": f"127.0.0.1:{port}", "link_ttl_s": 1}}
    with running_daemon(tmp_path / "short", config) as daemon:
        link = sign_in_link(daemon)
        issued = time.monotonic()
        while time.monotonic() < issued + 1.2:  # the condition is the link's age itself
            time.sleep(0.05)
        context = browser.new_context()
        page = context.new_page()
        answer = page.goto(link)
        assert answer.status == 403 and "expired" in page.locator("main").inner_text()
        shot(page, "11-expired-link")
        context.close()


def test_the_console_is_not_on_the_gateway_port(console: tuple[DaemonProcess, int]) -> None:
    daemon, port = console
    assert port != daemon.port
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/signin?token=x", timeout=10)
    assert refused.value.code == 404


@pytest.fixture(scope="module", autouse=True)
def _fresh_screenshots() -> None:
    shutil.rmtree(SHOTS, ignore_errors=True)
