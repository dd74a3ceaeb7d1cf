"""Credits against the real daemon and real sandboxed replicas: deploy admission, the
ledger against replica-seconds x rate, zero balance undeploying everything, and the
outbox with no SMTP configured (`scriptctl notifications`).

The "meter" profile costs 3.6 credits per hour (1000 micro-credits a second) so
seconds of running are easy to see; the meter ticks every 0.25 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root
from tests.helpers import REPO, AdminClient, AdminError, DaemonProcess, running_daemon

RATE_UC_PER_S = 1000  # 3.6 credits per hour
CONFIG: dict[str, Any] = {
    "profiles": [
        {"name": "meter", "label": "metered (tests)", "nominal_vcpus": 1, "nominal_memory_gib": 1,
         "vcpus": 0.5, "memory_gib": 0.25, "credits_per_hour": 3.6, "default": True},
    ],
    # A deploy needs min replicas x 36 s of credits: 0.036 credits for one replica.
    "credits": {"meter_interval_s": 0.25, "admission_hours": 0.01, "low_balance": "50%",
                "initial_allocation": 100},
}  # fmt: skip


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Iterator[DaemonProcess]:
    require_root()
    with running_daemon(tmp_path_factory.mktemp("credits"), CONFIG, build_cache) as d:
        yield d


@pytest.fixture(scope="module")
def admin(daemon: DaemonProcess) -> AdminClient:
    return daemon.client()


def scriptctl(daemon: DaemonProcess, *args: str) -> Any:
    env = {**os.environ, "SCRIPTD_SOCKET": str(daemon.socket)}
    out = subprocess.run([sys.executable, "-m", "daemon.cli", "--json", *args], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def set_allocation(admin: AdminClient, credits: float) -> Any:
    return admin.call("PUT", "/v1/account", {"allocation": credits, "reset": True})


def test_a_new_account_starts_with_the_initial_allocation(admin: AdminClient) -> None:
    account = admin.get("/v1/account")
    assert account["allocation"] == 100 and account["balance"] <= 100


def test_deploy_is_refused_on_an_empty_balance(daemon: DaemonProcess, admin: AdminClient) -> None:
    set_allocation(admin, 0)
    admin.create("poor")
    r = admin.request("POST", "/v1/scripts/poor/deploy", {})
    assert r.status == 409, r.body
    error = r.json()["error"]
    assert error["reason"] == "insufficient_credits"
    assert (
        "not enough credits: 1 replica of meter for 0.01 h cost 0.036000 credits"
        in (error["message"])
    )
    assert "scriptctl account set --allocation N" in error["message"]
    assert admin.script("poor")["status"] == "Draft"  # nothing changed
    # create --deploy is refused before anything is created
    with pytest.raises(AdminError) as refused:
        admin.create("poorer", deploy=True)
    assert refused.value.response.status == 409
    assert admin.request("GET", "/v1/scripts/poorer").status == 404
    shown = scriptctl(daemon, "account")
    assert shown["balance"] == 0 and shown["allocation"] == 0


def test_the_ledger_is_replica_seconds_times_rate(
    daemon: DaemonProcess, admin: AdminClient
) -> None:
    set_allocation(admin, 50)
    t0 = time.time()
    admin.create("metered", deploy=True)
    assert admin.wait_status("metered")["status"] == "Deployed"
    t1 = time.time()
    time.sleep(2.0)
    t2 = time.time()
    admin.action("metered", "undeploy", expect=200)
    t3 = time.time()
    time.sleep(0.5)  # the settle of the drained replica
    usage = scriptctl(daemon, "account", "usage", "--since", "1h")
    [row] = [u for u in usage["scripts"] if u["script"] == "metered"]
    assert row["replicas"] == 1 and row["profile"] == "meter"
    # One replica ran from before the deploy finished until the undeploy returned.
    assert t2 - t1 <= row["replica_seconds"] <= t3 - t0 + 0.5
    # Exact integer arithmetic: credits = floor(replica-ms x rate / 3.6e6) for one replica.
    assert round(row["credits"] * 1e6) == int(row["replica_seconds"] * 1000) * RATE_UC_PER_S // 1000
    account = admin.get("/v1/account")
    assert account["balance_micro"] == 50_000_000 - round(usage["total_credits"] * 1e6)
    # Nothing charged after the stop.
    time.sleep(0.6)
    assert admin.get("/v1/account")["balance_micro"] == account["balance_micro"]


def test_zero_balance_undeploys_everything_and_tells_the_admin(
    daemon: DaemonProcess, admin: AdminClient
) -> None:
    set_allocation(admin, 10)
    for name in ("drain-a", "drain-b"):
        admin.create(name, deploy=True)
    for name in ("drain-a", "drain-b"):
        assert admin.wait_status(name)["status"] == "Deployed"
    # Two replicas burn 0.002 credits a second: 0.004 last about 2 s, low at 0.002.
    set_allocation(admin, 0.004)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if all(admin.script(n)["status"] == "Ready to Deploy" for n in ("drain-a", "drain-b")):
            break
        time.sleep(0.2)
    for name in ("drain-a", "drain-b"):
        script = admin.script(name)
        assert script["status"] == "Ready to Deploy", script
        events = admin.get(f"/v1/scripts/{name}/events?kind=undeployed")["events"]
        assert events[-1]["actor"] == "scriptd (credits exhausted)"
    kinds = [n["kind"] for n in scriptctl(daemon, "notifications")["notifications"]]
    assert kinds.count("credits_exhausted") == 1 and kinds.count("low_credits") == 1
    mails = scriptctl(daemon, "notifications", "--status", "queued")["notifications"]
    [exhausted] = [m for m in mails if m["kind"] == "credits_exhausted"]
    assert exhausted["subject"] == "Credits exhausted - custom scripts undeployed"
    # One email for all of them, not one "undeployed" email per script.
    assert not [m for m in mails if m["kind"] == "undeployed" and m["script"].startswith("drain")]
    r = admin.request("POST", "/v1/scripts/drain-a/deploy", {})
    assert r.status == 409 and "not enough credits" in r.json()["error"]["message"]


def test_without_smtp_notifications_stay_queued_and_are_listed(
    daemon: DaemonProcess, admin: AdminClient
) -> None:
    listed = scriptctl(daemon, "notifications", "--script", "metered")
    assert listed["smtp_configured"] is False
    mails = {m["kind"]: m for m in listed["notifications"]}
    assert mails["deployed"]["subject"] == (
        "Custom script deployed successfully - API Endpoint Available"
    )
    assert mails["undeployed"]["subject"] == "Your custom script has been undeployed successfully"
    assert {m["status"] for m in mails.values()} == {"queued"}
    assert mails["deployed"]["version"] == 1
    env = {**os.environ, "SCRIPTD_SOCKET": str(daemon.socket)}
    text = subprocess.run([sys.executable, "-m", "daemon.cli", "notifications"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=30).stdout  # fmt: skip
    assert "no SMTP configured" in text and "queued" in text


def test_a_crash_counts_nothing_twice(daemon: DaemonProcess, admin: AdminClient) -> None:
    set_allocation(admin, 50)
    t0 = time.time()
    admin.create("survivor", deploy=True)
    assert admin.wait_status("survivor")["status"] == "Deployed"
    time.sleep(1.0)
    daemon.kill()  # SIGKILL: the meter's last interval is lost, at most
    daemon.start()
    admin = daemon.client()
    assert admin.wait_status("survivor")["status"] == "Deployed"  # started again
    time.sleep(1.0)
    admin.action("survivor", "undeploy", expect=200)
    t_end = time.time()
    time.sleep(0.5)
    [row] = [u for u in admin.get("/v1/account/usage")["scripts"] if u["script"] == "survivor"]
    assert row["replicas"] == 2  # one replica per daemon run, each with its own id
    assert 2.0 - 0.25 <= row["replica_seconds"] <= t_end - t0
    # Only this script ran since the allocation was reset: the balance paid exactly it.
    assert 50_000_000 - admin.get("/v1/account")["balance_micro"] == round(row["credits"] * 1e6)
