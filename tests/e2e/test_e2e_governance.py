"""Staff in a real browser: the retention policy previewed and refused at 0 days, the audit log read,
filtered and exported, a person erased (their open page loses its session); no serious or critical axe
violation on these admin pages."""

from __future__ import annotations

import csv
import io
import re

from playwright.sync_api import expect

from tests.e2e.test_e2e_usage_dashboard import serious_violations


def test_staff_set_retention_read_the_audit_log_and_erase_a_person(new_context, sign_up, log_in_as_staff):
    person = new_context().new_page()
    username = sign_up(person)
    staff = new_context().new_page()
    staff_name = log_in_as_staff(staff)
    found: dict[str, list[str]] = {}

    staff.goto("/admin/privacy/retentionpolicy/")
    staff.locator("#result_list tbody a", has_text="Retention policy").click()
    expect(staff.locator(".field-next_run")).to_contain_text(
        "once enabled; nothing is deleted while it is off"
    )
    found["policy"] = serious_violations(staff)
    staff.fill("#id_days", "0")
    staff.get_by_role("button", name="Save", exact=True).click()
    expect(staff.locator(".errorlist")).to_contain_text("Keep conversations for at least 1 day")
    staff.fill("#id_days", "30")
    staff.get_by_role("button", name="Save", exact=True).click()
    expect(staff.locator(".messagelist")).to_contain_text("was changed successfully")

    staff.goto("/admin/audit/auditentry/")
    staff.get_by_role("link", name="retention.policy.changed", exact=True).click()
    row = staff.locator("#result_list tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(staff_name)
    found["audit log"] = serious_violations(staff)
    staff.locator("#result_list tbody input[type=checkbox]").check()
    staff.select_option("select[name=action]", "export_csv")
    with staff.expect_download() as download:
        staff.get_by_role("button", name="Run").click()
    rows = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    assert [(r["action"], r["actor_label"]) for r in rows] == [("retention.policy.changed", staff_name)]
    assert '"days": 30' in rows[0]["after"] and len(rows[0]["hash"]) == 64
    staff.goto("/admin/audit/auditentry/")
    staff.locator("#result_list tbody tr th a").first.click()
    expect(staff.locator(".field-hash")).to_be_visible()
    expect(staff.get_by_role("button", name="Save")).to_have_count(0)  # read-only
    found["audit entry"] = serious_violations(staff)

    staff.goto("/admin/privacy/erasure/add/")
    found["erasure"] = serious_violations(staff)
    staff.select_option("#id_user", label=username)
    staff.get_by_role("button", name="Save", exact=True).click()
    expect(staff.locator(".errorlist")).to_contain_text("This field is required")
    staff.check("#id_confirm")
    staff.get_by_role("button", name="Save", exact=True).click()
    expect(staff.locator(".messagelist")).to_contain_text("Erased: 0 conversation(s) deleted")
    expect(staff.locator("#result_list")).to_contain_text("Erasure of user #")

    person.goto("/")
    expect(person).to_have_url(re.compile(r"/accounts/login/"))
    assert found == {name: [] for name in found}, found
