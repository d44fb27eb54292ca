"""HTTP API views in process: what the wrapper counts and answers before any app is involved."""

from __future__ import annotations

from django.test import Client

from realtime.stats import stats


def test_unknown_methods_are_one_bounded_label() -> None:
    """Clients may send any method token; it must never become a metric label value."""
    client = Client()
    for method in ("BREW", "PROPFIND", "X" * 100):
        response = client.generic(method, "/apps/1/events")
        assert response.status_code == 405
        assert "error" in response.json()
    labels = {labels[0] for labels in stats.counters["http_requests"]}
    assert "BREW" not in labels and "PROPFIND" not in labels
    assert ("other", "events", "405") in stats.counters["http_requests"]


def test_unknown_api_path_is_json_404() -> None:
    response = Client().post("/apps/1/whatever/else", data=b"{}", content_type="application/json")
    assert response.status_code == 404
    assert response.json() == {"error": "Not found"}
    assert ("POST", "not_found", "404") in stats.counters["http_requests"]
