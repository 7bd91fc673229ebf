"""The attribution's reads start as soon as the read of the runs shows they are needed, and only
then: the activity feed once a listing page shows a declared run in another state (alongside the
remaining pages, not after them), the auto-archive setting once a page shows a complete run
declared active; nothing for a plan without drift; and a listing that fails is still the error."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from reconcile import pipeline
from reconcile.config import TOKEN_ENV, Flags, Settings
from reconcile.errors import ApiError
from reconcile.plan import Plan
from reconcile.sandbox import Fault, Sandbox
from reconcile.sandbox.organization import AutoArchive
from reconcile.tallyfy import TallyfyClient
from tests.demo import ORG, TOKEN
from tests.helpers import big_org_runs, sandbox_connect, write_state

FEED = "/activity-feeds"


@pytest.fixture
def org() -> Sandbox:
    """Several pages in each listing (two of 100 active, two of archived)."""
    return Sandbox(ORG, TOKEN, big_org_runs())


def live(org: Sandbox) -> dict[str, str]:
    archived = set(org.run_ids(archived=True))
    return {run_id: "archived" if run_id in archived else "active" for run_id in org.run_ids()}


def plan(org: Sandbox, declared: dict[str, str], tmp_path: Path) -> Plan:
    path = write_state(tmp_path / "state.toml", declared)
    flags = Flags(api_url="https://sandbox.test/api", org_id=ORG, fetch="list")
    return pipeline.plan(path, flags, environ={TOKEN_ENV: TOKEN}, connect=sandbox_connect(org))


def paths(org: Sandbox) -> list[str]:
    return [request.path for request in org.requests]


def test_the_feed_is_read_alongside_the_pages_once_one_shows_drift(
    org: Sandbox, tmp_path: Path
) -> None:
    declared = live(org)
    first_active = org.run_ids(archived=False)[0]  # on the active listing's first page
    declared[first_active] = "archived"
    planned = plan(org, declared, tmp_path)

    assert [change.run_id for change in planned.changes] == [first_active]
    assert planned.changes[0].attribution is not None
    order = paths(org)
    listing = [n for n, path in enumerate(order) if path.endswith("/runs")]
    feed = [n for n, path in enumerate(order) if path.endswith(FEED)]
    assert len(listing) == 4, order
    assert feed, order
    assert feed[0] < listing[-1], "the feed is asked before the last page is answered"


def test_a_plan_without_drift_reads_no_feed_and_no_user(org: Sandbox, tmp_path: Path) -> None:
    planned = plan(org, live(org), tmp_path)

    assert planned.changes == ()
    assert not [p for p in paths(org) if p.endswith((FEED, "/me"))], paths(org)


def test_the_setting_is_read_once_a_page_shows_a_complete_run_declared_active(
    org: Sandbox, tmp_path: Path
) -> None:
    org.auto_archive = AutoArchive(True, "days", 7)
    declared = live(org)  # runs of status "complete" are declared active among them

    planned = plan(org, declared, tmp_path)

    assert planned.changes == ()
    settings = [p for p in paths(org) if p == f"/organizations/{ORG}"]
    assert settings == [f"/organizations/{ORG}"], "read once, though many pages show such runs"


class RefusesSecondPages(httpx.AsyncBaseTransport):
    """The in-process sandbox, whose token loses its permission when the listings' second pages
    are asked for: after the first pages showed the drift, so the feed's read has begun."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._inner = sandbox.transport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") == "2":
            self._sandbox.inject(Fault("status", path_contains="/runs", status=403, times=100))
        return await self._inner.handle_async_request(request)


def test_a_listing_that_fails_after_the_feed_read_began_is_the_error_reported(
    org: Sandbox, tmp_path: Path
) -> None:
    declared = live(org)
    declared[org.run_ids(archived=False)[0]] = "archived"
    path = write_state(tmp_path / "state.toml", declared)

    def connect(settings: Settings) -> TallyfyClient:
        return TallyfyClient(settings.target, settings.token, transport=RefusesSecondPages(org))

    flags = Flags(api_url="https://sandbox.test/api", org_id=ORG, fetch="list")
    with pytest.raises(ApiError) as refused:
        pipeline.plan(path, flags, environ={TOKEN_ENV: TOKEN}, connect=connect)
    assert any(p.endswith(FEED) for p in paths(org)), "the feed's read had begun"
    assert refused.value.status == 403
    assert refused.value.path is not None
    assert refused.value.path.startswith(f"/organizations/{ORG}/runs?")
