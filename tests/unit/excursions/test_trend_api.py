"""The trend API: windows, decimation on the server, marks and labels, roles, refusals."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from excursions.trend.model import MAX_WINDOW, WINDOWS

from .test_api import ROLES, api, signed_in  # noqa: F401  (the fixture)

URL = "/api/v1/excursions/{}/trend"


@pytest.mark.parametrize("role", ROLES)
def test_readers_only(api: tuple[TestClient, str], role: str) -> None:  # noqa: F811
    """Viewers, operators and QA read the trend; an administrator may not; nobody signed out."""
    client, record_id = api
    expected = 403 if role == "admin" else 200
    assert signed_in(client, role).get(URL.format(record_id)).status_code == expected
    assert signed_in(client, None).get(URL.format(record_id)).status_code == 401


@pytest.mark.parametrize(
    "window", ["1y", "", "RECORD", "3d;drop", "<script>", "x" * 17, "6h&window=3d"]
)
def test_an_unknown_window_is_refused_with_a_sentence(
    api: tuple[TestClient, str],  # noqa: F811
    window: str,
) -> None:
    """Anything but the windows offered gets 422 and says which are offered, never a 500."""
    client, record_id = api
    signed_in(client, "viewer")
    response = client.get(URL.format(record_id), params={"window": window})
    assert response.status_code == 422, response.text
    detail = str(response.json()["detail"])
    assert "window" in detail


def test_each_window_holds_the_record_and_stays_bounded(
    api: tuple[TestClient, str],  # noqa: F811
) -> None:
    """Every window holds the whole record, the wider ones more, none more than 7 days."""
    client, record_id = api
    signed_in(client, "qa")
    spans = {}
    for name in WINDOWS:
        body = client.get(URL.format(record_id), params={"window": name}).json()
        chart = body["chart"]
        assert chart["window"] == body["window"] == name
        start, end = chart["x_range"]
        assert end - start <= MAX_WINDOW.total_seconds()
        assert start <= chart["span"]["start"] <= chart["span"]["end"] <= end
        spans[name] = end - start
    assert spans["record"] < spans["6h"] <= spans["24h"] <= spans["3d"]


def test_the_chart_carries_marks_labels_and_site_time(
    api: tuple[TestClient, str],  # noqa: F811
) -> None:
    """The limit crossed and each level reached are marked; labels as the page writes them."""
    client, record_id = api
    signed_in(client, "viewer")
    chart = client.get(URL.format(record_id)).json()["chart"]
    kinds = [m["kind"] for m in chart["marks"]]
    assert kinds[0] == "crossed"
    assert {"alert", "action"} <= set(kinds)
    assert all(m["label"].endswith(("CET", "CEST")) for m in chart["marks"])
    assert [x["label"] for x in chart["limits"]] == ["action high 10.0 °C", "alert high 8.0 °C"]
    assert chart["peak"]["label"] == "peak 12.0 °C"
    assert chart["zone"] == "Europe/Berlin"
    assert chart["offsets"][0][2] == "CET"
    legend = [e["text"] for e in chart["legend"]]
    assert "limit crossed (record start)" in legend
    assert chart["series"]["v"] == [5, 9, 11, 12, 9.5]  # up to the app's clock
