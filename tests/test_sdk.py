"""Tallyfy's own Python SDK (PyPI `tallyfy`), unchanged, against the sandbox over real HTTP on
loopback: every call it has on runs, and its error paths. What the SDK parses is compared with
the sandbox's own state, and what it sent with the sandbox's request log.

The SDK reads pagination links as `prev`, the docs (and the sandbox) write `previous`; the SDK
keeps what it does not know in `extra`, which is where the docs' key shows up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tallyfy import TallyfyError, TallyfySDK

from reconcile.sandbox import Behaviour, Fault, Sandbox, serve
from reconcile.sandbox.seed import DEMO_SEED
from tests.demo import DEMO_IDS, ORG, TOKEN

IDS = DEMO_IDS
ARCHIVED = [IDS[2], IDS[8], IDS[9]]
LIVE = [i for i in IDS if i not in ARCHIVED]
TIMEOUT = 5  # seconds per request; every retry below waits 0 or 1 s
RUNS = f"/organizations/{ORG}/runs"


@pytest.fixture
def org() -> Sandbox:
    """The demo organization, on its own: the SDK may send what reconcile never does (PUT)."""
    return Sandbox.from_seed(DEMO_SEED)


@pytest.fixture
def url(org: Sandbox) -> Iterator[str]:
    with serve(org) as running:
        yield running.url


def sdk(url: str, token: str = TOKEN, max_retries: int = 2) -> TallyfySDK:
    # No backoff of its own: a Retry-After the sandbox sends is still what it waits.
    return TallyfySDK(
        token, base_url=url, timeout=TIMEOUT, max_retries=max_retries, retry_delay=0,
        retry_jitter=0,
    )  # fmt: skip


def ids(runs: Any) -> list[str]:
    return [run.id for run in runs.data]


def test_get_process_parses_every_run(org: Sandbox, url: str) -> None:
    with sdk(url) as client:
        for run_id in IDS:
            run = client.get_process(ORG, run_id)
            truth = org.run(run_id)
            assert (run.id, run.name, run.status, run.archived_at) == (
                run_id,
                truth["name"],
                truth["status"],
                truth["archived_at"],
            )
            assert (run.started_by, run.owner_id) == (truth["started_by"], truth["owner_id"])
            for parsed, shown in ((run.progress, truth["progress"]),
                                  (run.whole_progress, truth["whole_progress"])):  # fmt: skip
                assert (parsed.complete, parsed.total, parsed.percent) == (
                    shown["complete"],
                    shown["total"],
                    shown["percent"],
                )
        tagged = client.get_process(ORG, IDS[1], with_="tags")
    assert tagged.tags == {"data": [{"id": t, "title": t} for t in ("audit", "compliance")]}
    assert [r.query for r in org.requests][-1] == {"with": "tags"}


@pytest.mark.parametrize(
    ("archived", "expected"), [(None, LIVE), ("only", ARCHIVED), ("true", list(IDS))]
)
def test_get_organization_runs(
    org: Sandbox, url: str, archived: str | None, expected: list[str]
) -> None:
    with sdk(url) as client:
        runs = client.get_organization_runs(ORG, archived=archived)
    assert ids(runs) == expected
    assert (runs.count, runs.meta.total, runs.meta.total_pages) == (len(expected), len(expected), 1)
    assert runs.meta.links is None  # the sandbox's [] for "no links", as PHP writes it
    sent = org.requests[-1].query
    assert sent == {"per_page": "25", "page": "1", **({"archived": archived} if archived else {})}


def test_pages(org: Sandbox, url: str) -> None:
    with sdk(url) as client:
        pages = [
            client.tasks.get_organization_processes(ORG, per_page=4, page=page, archived="true")
            for page in (1, 2, 3)
        ]
    assert [run_id for page in pages for run_id in ids(page)] == list(IDS)
    assert [page.meta.current_page for page in pages] == [1, 2, 3]
    assert {page.meta.total_pages for page in pages} == {3}
    middle = pages[1].meta.links
    assert middle.next.endswith(f"{RUNS}?archived=true&per_page=4&page=3")
    # SDK 3.1.0 looks for `prev` and keeps the docs' `previous` in its catch-all, `extra`.
    previous = middle.prev or middle.extra.get("previous")
    assert previous.endswith(f"{RUNS}?archived=true&per_page=4&page=1")
    assert pages[2].meta.links.next is None


@pytest.mark.parametrize(
    "behaviour",
    [
        Behaviour(pagination_links="null"),
        Behaviour(pagination_links="empty", total_pages="absent"),
        Behaviour(total_pages=250, per_page_ignored=True, per_page_default=3),
        Behaviour(archived_listing="archived", default_lists_archived=True),
    ],
)
def test_listing_switches_parse(org: Sandbox, url: str, behaviour: Behaviour) -> None:
    """The SDK reads a listing whatever shape the switches give its pagination."""
    org.behaviour = behaviour
    with sdk(url) as client:
        runs = client.get_organization_runs(ORG, per_page=5)
    expected = list(IDS) if behaviour.default_lists_archived else LIVE
    size = 3 if behaviour.per_page_ignored else 5
    assert ids(runs) == expected[:size]
    assert runs.meta.total == len(expected)


def test_archive_reactivate_and_update(org: Sandbox, url: str) -> None:
    with sdk(url) as client:
        assert client.archive_process(ORG, IDS[3]) is True
        assert org.is_archived(IDS[3])
        archived = client.get_process(ORG, IDS[3])
        assert archived.status == "archived"
        assert archived.archived_at == org.run(IDS[3])["archived_at"]
        restored = client.reactivate_process(ORG, IDS[3])
        assert (restored.status, restored.archived_at) == ("problem", None)
        renamed = client.update_process(ORG, IDS[0], name="Renamed by the SDK")
    assert not org.is_archived(IDS[3])
    assert renamed.name == org.run(IDS[0])["name"] == "Renamed by the SDK"
    assert [(r.method, r.path, r.status) for r in org.writes] == [
        ("DELETE", f"{RUNS}/{IDS[3]}", 200),
        ("PUT", f"{RUNS}/{IDS[3]}/activate", 200),
        ("PUT", f"{RUNS}/{IDS[0]}", 200),
    ]


@pytest.mark.parametrize(
    ("call", "status", "message"),
    [
        (lambda c: c.get_process(ORG, "f" * 32), 404, "Resource not found"),
        (lambda c: c.archive_process(ORG, "f" * 32), 404, "Resource not found"),
        (
            lambda c: c.get_organization_runs(ORG, folder="12"),
            422,
            "The sandbox does not implement the folder filter.",
        ),
        (
            lambda c: c.get_organization_runs(ORG, task_status="completed"),
            422,
            "The sandbox does not implement the task_status filter.",
        ),
    ],
)
def test_errors(org: Sandbox, url: str, call: Any, status: int, message: str) -> None:
    with sdk(url) as client, pytest.raises(TallyfyError) as caught:
        call(client)
    assert caught.value.status_code == status
    assert str(caught.value) == f"API request failed with status {status}: {message}"
    assert [r.status for r in org.requests] == [status]  # no retry of a 4xx


def test_a_refused_token_is_401(org: Sandbox, url: str) -> None:
    with sdk(url, token="not-the-token") as client, pytest.raises(TallyfyError) as caught:
        client.get_organization_runs(ORG)
    assert caught.value.status_code == 401
    assert caught.value.response_data["code"] == "UNAUTHENTICATED"
    assert org.writes == []


def test_429_then_a_retry(org: Sandbox, url: str) -> None:
    org.inject(Fault("status", status=429, retry_after=0, method="DELETE"))
    with sdk(url) as client:
        assert client.archive_process(ORG, IDS[0]) is True
    assert [r.status for r in org.writes] == [429, 200]
    assert org.is_archived(IDS[0])


def test_a_rate_window_is_waited_out(org: Sandbox, url: str) -> None:
    """The SDK honours the window's Retry-After (1 s here) and gets its answer."""
    org.behaviour = Behaviour(rate_windows=("2/1s:get",))
    with sdk(url) as client:
        runs = [client.get_process(ORG, run_id) for run_id in IDS[:3]]
    assert [run.id for run in runs] == list(IDS[:3])
    assert [r.status for r in org.requests] == [200, 200, 429, 200]


def test_429_past_the_retry_budget(org: Sandbox, url: str) -> None:
    org.inject(Fault("status", status=429, retry_after=0, times=3))
    with sdk(url, max_retries=2) as client, pytest.raises(TallyfyError) as caught:
        client.get_process(ORG, IDS[0])
    assert caught.value.status_code == 429
    assert [r.status for r in org.requests] == [429, 429, 429]
