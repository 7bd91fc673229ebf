"""The run endpoints: which paths exist, and what each answers once a request is authorized."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconcile.sandbox.listing import list_runs, parse_list_query, wants_tags
from reconcile.sandbox.model import RUN_ID, Behaviour
from reconcile.sandbox.responses import (
    SandboxResponse,
    error,
    forbidden,
    invalid,
    not_found,
    raw_json,
)
from reconcile.sandbox.store import RunRecord, RunStore

# Endpoint name -> methods it answers. HEAD is accepted wherever GET is.
ALLOWED: dict[str, tuple[str, ...]] = {
    "runs": ("GET", "HEAD"),
    "run": ("GET", "HEAD", "PUT", "DELETE"),
    "activate": ("PUT",),
    "delete": ("DELETE",),
    "me": ("GET", "HEAD"),
    "my_organizations": ("GET", "HEAD"),
    "organization": ("GET", "HEAD"),
    "activity": ("GET", "HEAD"),
}
NAME_MAX = 550
_ARCHIVED_PUT = "Cannot update archived processes."


@dataclass(frozen=True)
class Route:
    """A path the API has: the endpoint, and the org and run ids it names."""

    endpoint: str
    org_id: str | None = None
    run_id: str | None = None


def match(path: str) -> Route | None:
    """Map a normalized path (no /api prefix) to its route, or None for an unknown path."""
    parts = path.strip("/").split("/")
    if parts == ["me"]:
        return Route("me")
    if parts == ["me", "organizations"]:
        return Route("my_organizations")
    if len(parts) == 2 and parts[0] == "organizations" and parts[1]:
        return Route("organization", parts[1])
    if len(parts) == 3 and parts[0] == "organizations" and parts[2] == "activity-feeds":
        return Route("activity", parts[1])
    if len(parts) < 3 or parts[0] != "organizations" or parts[2] != "runs" or not parts[1]:
        return None
    if len(parts) == 3:
        return Route("runs", parts[1])
    if len(parts) == 4 and parts[3]:
        return Route("run", parts[1], parts[3])
    if len(parts) == 5 and parts[3] and parts[4] in ("activate", "delete"):
        return Route(parts[4], parts[1], parts[3])
    return None


@dataclass(frozen=True)
class Call:
    """An authorized request to a run endpoint, with what the handlers need to answer it."""

    route: Route
    method: str
    query: Mapping[str, str]
    body: bytes
    page_url: str
    """Scheme, host and path as requested, for the absolute pagination links."""
    now: str
    """The server's current time, for archived_at and last_updated."""


def handle(call: Call, store: RunStore, behaviour: Behaviour) -> SandboxResponse:
    """Answer an authorized run request."""
    endpoint = call.route.endpoint
    if endpoint == "runs":
        listing = parse_list_query(call.query, behaviour)
        if isinstance(listing, SandboxResponse):
            return listing
        return list_runs(store, listing, behaviour, call.page_url, call.query)
    run_id = call.route.run_id or ""
    # Ids that cannot exist are simply not found, as with any other missing run.
    record = store.get(run_id) if RUN_ID.fullmatch(run_id) else None
    if record is None:
        return not_found()
    if endpoint == "activate":
        return _activate(call, store, behaviour, record)
    if endpoint == "delete":
        return _delete_permanently(store, behaviour, record)
    if call.method == "DELETE":
        return _archive(call, store, behaviour, record)
    if call.method == "PUT":
        return _update(call, behaviour, record)
    if record.archived and behaviour.archived_get == 404:
        return not_found()
    return _run(record, behaviour, with_tags=wants_tags(call.query))


def _run(record: RunRecord, behaviour: Behaviour, with_tags: bool = False) -> SandboxResponse:
    encoded = record.encoded(behaviour.archive_sets_status, with_tags)
    return raw_json(200, b'{"data":' + encoded + b"}")


def _noop(record: RunRecord, behaviour: Behaviour, reason: str) -> SandboxResponse:
    answer = behaviour.noop_write
    if answer == "404":
        return not_found()
    if answer == "422":
        return invalid({"run": [reason]}, reason)
    if answer == "400":
        return error(400, reason, "BAD_REQUEST")
    if answer == "409":
        return error(409, reason, "CONFLICT")
    return _run(record, behaviour)


def _archive(
    call: Call, store: RunStore, behaviour: Behaviour, record: RunRecord
) -> SandboxResponse:
    if not behaviour.can_archive:
        return forbidden("You don't have permission to archive this process.")
    if record.archived:
        return _noop(record, behaviour, "The process is already archived.")
    record.last_updated = call.now
    store.set_archived_at(record, call.now)
    return _run(record, behaviour)


def _activate(
    call: Call, store: RunStore, behaviour: Behaviour, record: RunRecord
) -> SandboxResponse:
    if not behaviour.can_archive:
        return forbidden("You don't have permission to activate this process.")
    if not record.archived:
        return _noop(record, behaviour, "The process is not archived.")
    # The workflow status was never overwritten, so activating restores it by itself.
    record.last_updated = call.now
    store.set_archived_at(record, None)
    return _run(record, behaviour)


def _delete_permanently(
    store: RunStore, behaviour: Behaviour, record: RunRecord
) -> SandboxResponse:
    if not behaviour.admin:
        return forbidden("Only administrators can permanently delete processes.")
    if not record.archived:
        reason = "The process must be archived before it can be deleted permanently."
        return invalid({"run": [reason]}, reason)
    store.delete(record)
    return SandboxResponse(200)


def _update(call: Call, behaviour: Behaviour, record: RunRecord) -> SandboxResponse:
    if record.archived:
        return invalid({"run": [_ARCHIVED_PUT]}, _ARCHIVED_PUT)
    try:
        payload = json.loads(call.body) if call.body.strip() else {}
    except ValueError:
        return error(400, "The request body is not valid JSON.", "INVALID_JSON")
    if not isinstance(payload, dict):
        return invalid({"body": ["The request body must be a JSON object."]})
    errors = _validate(payload)
    if errors:
        return invalid(errors)
    if "name" in payload:
        record.name = payload["name"]
    if "summary" in payload:
        record.summary = payload["summary"]
    if "owner_id" in payload:
        record.owner_id = payload["owner_id"]
    if "starred" in payload:
        record.starred = payload["starred"]
    if "is_public" in payload:
        record.is_public = payload["is_public"]
    if "prerun" in payload:
        record.prerun = {**record.prerun, **payload["prerun"]}
    # Each list replaces the whole set when sent; leaving it out may wipe it (MCP, proven live).
    if "users" in payload or behaviour.put_clears_assignees:
        record.users = list(payload.get("users", []))
    if "groups" in payload or behaviour.put_clears_assignees:
        record.groups = list(payload.get("groups", []))
    record.last_updated = call.now
    record.touch()
    return _run(record, behaviour)


def _validate(payload: dict[str, Any]) -> dict[str, list[str]]:
    """Laravel-style field errors for a PUT body; empty when the body is acceptable."""
    errors: dict[str, list[str]] = {}
    name = payload.get("name")
    if "name" in payload:
        if not isinstance(name, str) or not name.strip():
            errors["name"] = ["The name field is required."]
        elif len(name) > NAME_MAX:
            errors["name"] = [f"The name may not be greater than {NAME_MAX} characters."]
    if "summary" in payload and not isinstance(payload["summary"], str | None):
        errors["summary"] = ["The summary must be a string."]
    owner = payload.get("owner_id")
    if "owner_id" in payload and (not isinstance(owner, int) or isinstance(owner, bool)):
        errors["owner_id"] = ["The owner id must be an integer."]
    for flag in ("starred", "is_public"):
        if flag in payload and not isinstance(payload[flag], bool):
            errors[flag] = [f"The {flag.replace('_', ' ')} field must be true or false."]
    users = payload.get("users", [])
    if not isinstance(users, list) or any(
        not isinstance(u, int) or isinstance(u, bool) for u in users
    ):
        errors["users"] = ["The users must be a list of user ids."]
    groups = payload.get("groups", [])
    if not isinstance(groups, list) or any(not isinstance(g, str) for g in groups):
        errors["groups"] = ["The groups must be a list of group ids."]
    if "prerun" in payload and not isinstance(payload["prerun"], dict):
        errors["prerun"] = ["The prerun must be an object."]
    return errors
