"""Time the dashboard's preset switches in Chromium, against the 1,000,000-row bench database.

    .venv/bin/python bench/dashboard_queries.py --backend postgres   # seeds the data first (once)
    .venv/bin/python bench/dashboard_browser.py [--db-url postgres://…/bench_chat] [--rounds 5]

Starts one daphne worker (tests/servers.py) on the database bench/dashboard_queries.py seeded, logs in
as its staff account through the admin's login page, then clicks each period preset --rounds times in
Debian's Chromium and prints, per preset, the median milliseconds from the click until the new period
is on screen, and the bytes of the response that brought it. When the page swaps the dashboard block
with htmx, the time is measured in the page (click → htmx:afterSettle); when a preset link loads a
whole page, from the click until the new document's load event.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import CHROMIUM, CHROMIUM_ARGS, VENV_BIN, Worker, server_env  # noqa: E402

PASSWORD = "bench-Long-passw0rd!"
PRESETS = ["Today", "Last 7 days", "This month", "Last month", "Last 30 days", "Last 365 days"]
STAFF = """
from django.contrib.auth import get_user_model
user, _ = get_user_model().objects.get_or_create(username="bench-staff")
user.is_staff = user.is_superuser = True
user.set_password(PASSWORD)
user.save()
from billing.models import UsageRecord
print(UsageRecord.objects.count())
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--db-url", default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/bench_chat")
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    env = server_env(args.db_url, CHAT_LOGIN_FAILURE_LIMIT="1000")
    rows = subprocess.run(
        [str(VENV_BIN / "python"), "manage.py", "shell", "-c", STAFF.replace("PASSWORD", repr(PASSWORD))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    log = Path(tempfile.mkdtemp(prefix="bench-dashboard-")) / "daphne.log"
    worker = Worker(env, log).start()
    try:
        run(worker.url, int(rows), args.rounds)
    finally:
        worker.stop()


def run(base_url: str, rows: int, rounds: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(base_url=base_url, viewport={"width": 1366, "height": 860}).new_page()
        page.goto("/admin/login/")
        page.fill("#id_username", "bench-staff")
        page.fill("#id_password", PASSWORD)
        page.locator("#login-form [type=submit]").click()
        page.wait_for_url("**/admin/")
        page.goto("/admin/billing/usagerecord/dashboard/?preset=month")
        sizes: dict[str, int] = {}

        def remember(response) -> None:
            if "/dashboard/" in response.url and response.request.resource_type in (
                "document",
                "xhr",
                "fetch",
            ):
                sizes["last"] = len(response.body())

        page.on("response", remember)
        swaps = page.evaluate(
            "typeof htmx !== 'undefined' && !!document.querySelector('[hx-boost] a, a[hx-get]')"
        )
        page.evaluate(
            "document.addEventListener('htmx:afterSettle', () => { window.__settled = performance.now(); })"
        )
        print(
            f"\n{rows:,} ledger rows; dashboard preset switch in Chromium ({'htmx swap' if swaps else 'page load'}), "
            f"median of {rounds}:"
        )
        print(f"   {'preset':<15} {'median ms':>10} {'max ms':>8} {'bytes':>10}")
        order = PRESETS[1:] + PRESETS[:1]
        results: dict[str, list[float]] = {label: [] for label in PRESETS}
        for _ in range(rounds):
            for label in order:
                link = page.locator(".billing-presets a", has_text=label).first
                if swaps:
                    page.evaluate("window.__settled = null")
                    started = page.evaluate("performance.now()")
                    link.click()
                    page.wait_for_function("() => window.__settled !== null", polling="raf")
                    page.wait_for_function(
                        "label => document.querySelector('.billing-presets a.active')?.textContent === label",
                        arg=label,
                        polling="raf",
                    )
                    results[label].append(page.evaluate("window.__settled") - started)
                else:
                    started = time.perf_counter()
                    with page.expect_navigation(wait_until="load"):
                        link.click()
                    results[label].append((time.perf_counter() - started) * 1000)
                results[label + " bytes"] = sizes.get("last", 0)  # type: ignore[assignment]
        for label in PRESETS:
            samples = results[label]
            print(
                f"   {label:<15} {statistics.median(samples):>10.0f} {max(samples):>8.0f} "
                f"{results[label + ' bytes']:>10,}",
                flush=True,
            )
        browser.close()


if __name__ == "__main__":
    main()
