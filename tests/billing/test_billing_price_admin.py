from __future__ import annotations

import pytest
from billing_factories import make_staff, make_user, record_call

from billing.models import ModelPrice

pytestmark = pytest.mark.django_db


def test_staff_adds_a_price_in_usd_per_million_tokens(client):
    client.force_login(make_staff())
    response = client.post(
        "/admin/billing/modelprice/add/",
        {
            "model": "claude-new-9",
            "effective_from_0": "2026-12-01",
            "effective_from_1": "00:00:00",
            "note": "",
            "input_usd": "0.125",
            "output_usd": "2.5",
            "cache_write_5m_usd": "0.15625",
            "cache_write_1h_usd": "0.25",
            "cache_read_usd": "0.0125",
            "band_threshold_tokens": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    price = ModelPrice.objects.get(model="claude-new-9")
    assert (price.input_rate, price.cache_write_5m_rate, price.cache_read_rate) == (125_000, 156_250, 12_500)
    assert price.band_threshold_tokens is None and price.band_input_rate is None


def test_a_price_version_that_priced_calls_is_read_only_in_the_admin(client):
    staff = make_staff()
    row = record_call(make_user(), model="claude-opus-5", input_tokens=10)
    used = ModelPrice.objects.get(pk=row.price_id)
    unused = ModelPrice.objects.get(model="claude-haiku-4-5")
    client.force_login(staff)
    page = client.get(f"/admin/billing/modelprice/{used.pk}/change/")
    assert page.status_code == 200
    assert b"read only" in page.content
    assert client.post(f"/admin/billing/modelprice/{used.pk}/change/", {"model": "x"}).status_code == 403
    assert client.post(f"/admin/billing/modelprice/{used.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get(f"/admin/billing/modelprice/{unused.pk}/change/").status_code == 200


def test_staff_sets_budgets_in_usd_in_the_admin(client):
    from billing.models import SiteBudget, UserBudget
    from billing.services import budget_status

    student = make_user("student")
    client.force_login(make_staff())
    response = client.post(
        "/admin/billing/userbudget/add/",
        {"user": student.pk, "policy": "limit", "monthly_limit_usd": "50.25"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert UserBudget.objects.get(user=student).monthly_limit == 50_250_000_000_000
    assert budget_status(student).limit == 50_250_000_000_000
    response = client.post("/admin/billing/sitebudget/add/", {"policy": "unlimited", "monthly_limit_usd": ""})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert SiteBudget.load().policy == "unlimited"
    assert client.get("/admin/billing/userbudget/").status_code == 200
    assert client.get("/admin/billing/sitebudget/", follow=True).status_code == 200
    assert client.get("/admin/billing/spendreservation/").status_code == 200
