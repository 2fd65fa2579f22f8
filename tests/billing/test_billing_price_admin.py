from __future__ import annotations

import pytest
from billing_factories import make_staff, make_user, record_call

from billing.models import ModelPrice
from billing.money import rate_to_usd_per_mtok

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


def test_add_user_budget_for_a_user_whose_row_exists_sets_that_row(client):
    from billing.models import UserBudget
    from billing.services import budget_status

    student = make_user("already")
    UserBudget.objects.get_or_create(user=student)  # what the first reply's budget lock creates
    client.force_login(make_staff())
    response = client.post(
        "/admin/billing/userbudget/add/",
        {"user": student.pk, "policy": "limit", "monthly_limit_usd": "5"},
        follow=True,
    )
    assert response.status_code == 200
    assert response.redirect_chain and response.redirect_chain[-1][0].endswith("/admin/billing/userbudget/")
    assert "already had a budget row: it now says $5.00" in response.content.decode()
    assert UserBudget.objects.filter(user=student).count() == 1
    assert budget_status(student).limit == 5 * 10**12
    # Still refused: a limit policy without a figure (the form's own error, nothing saved).
    bad = client.post("/admin/billing/userbudget/add/", {"user": student.pk, "policy": "limit"})
    assert bad.status_code == 200 and b"Set the limit" in bad.content
    assert budget_status(student).limit == 5 * 10**12


def test_the_site_default_budget_shows_the_limit_in_force(client, settings):
    from billing.models import SiteBudget

    settings.CHAT_DEFAULT_MONTHLY_BUDGET_USD = "20"
    client.force_login(make_staff())
    assert not SiteBudget.objects.exists()
    response = client.get("/admin/billing/sitebudget/", follow=True)
    html = response.content.decode()
    assert response.redirect_chain[-1][0] == "/admin/billing/sitebudget/1/change/"
    assert "0 site default budget" not in html
    assert "$20.00, from the CHAT_DEFAULT_MONTHLY_BUDGET_USD setting" in html
    assert "From the CHAT_DEFAULT_MONTHLY_BUDGET_USD setting (now $20.00)" in html
    assert "Site default: $20.00 a month" in client.get("/admin/billing/userbudget/").content.decode()
    client.post(
        "/admin/billing/sitebudget/1/change/", {"policy": "limit", "monthly_limit_usd": "7.5"}, follow=True
    )
    html = client.get("/admin/billing/sitebudget/1/change/").content.decode()
    assert "$7.50, set here" in html


def test_a_price_in_use_links_to_a_new_version_prefilled_with_its_rates(client):
    staff = make_staff()
    row = record_call(make_user(), model="claude-opus-5", input_tokens=10)
    used = ModelPrice.objects.get(pk=row.price_id)
    client.force_login(staff)
    page = client.get(f"/admin/billing/modelprice/{used.pk}/change/").content.decode()
    link = f"/admin/billing/modelprice/add/?from_version={used.pk}"
    assert f'href="{link}"' in page and "Add a new version of this price" in page
    form = client.get(link).context["adminform"].form
    assert form.initial["model"] == "claude-opus-5"
    assert form.initial["input_usd"] == rate_to_usd_per_mtok(used.input_rate)
    assert form.initial["effective_from"] is not None
    assert client.get("/admin/billing/modelprice/add/?from_version=x").status_code == 200
    assert client.get("/admin/billing/modelprice/add/?from_version=999999").status_code == 200
