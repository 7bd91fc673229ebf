"""The pull-request comment on GitHub and the merge-request note on GitLab, and the one request
that proposes accepted drift, over their REST APIs.

The standard library's urllib is enough for the few calls made here, and keeps this separate
from the Tallyfy client: no retries, rate limits or pagination of runs apply to a comment.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from reconcile import __version__

TIMEOUT = 30.0
LIMIT = 16 * 1024 * 1024
"""The most an answer may hold: far more than 100 comments or requests take."""
_LINK_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


class ForgeError(Exception):
    """A request to GitHub or GitLab failed; the message names the request and the answer."""


@dataclass(frozen=True)
class Comment:
    id: int
    body: str


@dataclass(frozen=True)
class Request:
    """An open pull (merge) request: its number (a GitLab IID), web address and description."""

    number: int
    url: str
    body: str


class Forge(Protocol):
    """One pull (merge) request's comments, the request a commit was merged from, and the open
    request from a branch (found, opened, edited, closed)."""

    name: str
    request_noun: str

    def comments(self, number: int) -> Iterator[Comment]: ...

    def create(self, number: int, body: str) -> Comment: ...

    def update(self, number: int, comment: Comment, body: str) -> Comment: ...

    def merged_request(self, sha: str) -> int | None: ...

    def open_request(self, branch: str) -> Request | None: ...

    def propose(self, branch: str, base: str, title: str, body: str) -> Request: ...

    def edit(self, request: Request, title: str, body: str, *, close: bool = False) -> Request: ...


class _Api:
    """JSON over HTTP with one token header, never following a link off the API's own host."""

    def __init__(self, base: str, headers: Mapping[str, str]) -> None:
        self.base = base.rstrip("/")
        self.headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": f"reconcile-ci/{__version__}",
            **headers,
        }

    def call(
        self, method: str, url: str, data: Any = None, *, expect: type | None = None
    ) -> tuple[Any, Mapping[str, str]]:
        """The decoded answer and its headers. `expect` (list or dict) is the shape the answer
        must have: a list is one of objects."""
        if not url.startswith(self.base + "/"):
            url = self.base + url
        payload = None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(url, payload, self.headers, method=method)
        shown = f"{method} {urllib.parse.urlsplit(url).path}"
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                body = response.read(LIMIT + 1)
                headers = dict(response.headers.items())
        except urllib.error.HTTPError as exc:
            raise ForgeError(f"{shown} answered {exc.code}: {_message(exc.read())}") from None
        except (urllib.error.URLError, OSError) as exc:
            host = urllib.parse.urlsplit(url).netloc
            reason = getattr(exc, "reason", exc)
            raise ForgeError(f"{shown}: could not reach {host}: {reason}") from None
        if len(body) > LIMIT:
            raise ForgeError(f"{shown} answered more than {LIMIT // 2**20} MiB")
        try:
            answer = json.loads(body) if body else None
        except ValueError:
            raise ForgeError(f"{shown} answered something that is not JSON") from None
        shaped: dict[type | None, bool] = {
            None: True,
            list: isinstance(answer, list) and all(isinstance(item, dict) for item in answer),
            dict: isinstance(answer, dict),
        }
        if not shaped[expect]:
            kind = "a list of objects" if expect is list else "an object"
            raise ForgeError(f"{shown} answered JSON that is not {kind}")
        return answer, headers


def _message(body: bytes) -> str:
    try:
        decoded = json.loads(body)
    except ValueError:
        return "(no JSON message)"
    message = decoded.get("message") if isinstance(decoded, dict) else None
    return str(message)[:300] if message else "(no message)"


class GitHub:
    """A repository's issue comments (a pull request is an issue) through GitHub's REST API."""

    name = "GitHub"
    request_noun = "pull request"

    def __init__(self, api_url: str, repository: str, token: str) -> None:
        self.api = _Api(
            api_url,
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
        )
        self.repo = f"/repos/{repository}"
        self.owner = repository.partition("/")[0]

    def comments(self, number: int) -> Iterator[Comment]:
        url: str | None = f"{self.repo}/issues/{number}/comments?per_page=100"
        while url:
            page, headers = self.api.call("GET", url, expect=list)
            for item in page:
                yield _comment(item)
            found = _LINK_NEXT.search(_header(headers, "Link"))
            url = found[1] if found and found[1].startswith(self.api.base + "/") else None

    def create(self, number: int, body: str) -> Comment:
        path = f"{self.repo}/issues/{number}/comments"
        made, _ = self.api.call("POST", path, {"body": body}, expect=dict)
        return Comment(_comment(made).id, body)

    def update(self, number: int, comment: Comment, body: str) -> Comment:
        self.api.call("PATCH", f"{self.repo}/issues/comments/{comment.id}", {"body": body})
        return Comment(comment.id, body)

    def merged_request(self, sha: str) -> int | None:
        pulls, _ = self.api.call("GET", f"{self.repo}/commits/{sha}/pulls", expect=list)
        merged = [pull for pull in pulls if pull.get("merged_at")]
        return _request(merged[0], "number", "html_url", "body").number if merged else None

    def open_request(self, branch: str) -> Request | None:
        # `head` filters by "owner:branch"; at most one pull request can be open per head and base
        head = urllib.parse.quote(f"{self.owner}:{branch}", safe=":")
        url = f"{self.repo}/pulls?state=open&head={head}&per_page=100"
        pulls, _ = self.api.call("GET", url, expect=list)
        return _request(pulls[0], "number", "html_url", "body") if pulls else None

    def propose(self, branch: str, base: str, title: str, body: str) -> Request:
        fields = {"title": title, "head": branch, "base": base, "body": body}
        made, _ = self.api.call("POST", f"{self.repo}/pulls", fields, expect=dict)
        return _request(made, "number", "html_url", "body")

    def edit(self, request: Request, title: str, body: str, *, close: bool = False) -> Request:
        fields = {"title": title, "body": body} | ({"state": "closed"} if close else {})
        self.api.call("PATCH", f"{self.repo}/pulls/{request.number}", fields)
        return Request(request.number, request.url, body)


class GitLab:
    """A project's merge-request notes through GitLab's REST API (v4)."""

    name = "GitLab"
    request_noun = "merge request"

    def __init__(self, api_url: str, project_id: str, token: str) -> None:
        self.api = _Api(api_url, {"PRIVATE-TOKEN": token})
        self.project = f"/projects/{urllib.parse.quote(project_id, safe='')}"

    def comments(self, number: int) -> Iterator[Comment]:
        page: str | None = "1"
        while page:
            notes, headers = self.api.call(
                "GET",
                f"{self.project}/merge_requests/{number}/notes?sort=asc&per_page=100&page={page}",
                expect=list,
            )
            for note in notes:
                yield _comment(note)
            page = _header(headers, "X-Next-Page") or None

    def create(self, number: int, body: str) -> Comment:
        path = f"{self.project}/merge_requests/{number}/notes"
        made, _ = self.api.call("POST", path, {"body": body}, expect=dict)
        return Comment(_comment(made).id, body)

    def update(self, number: int, comment: Comment, body: str) -> Comment:
        path = f"{self.project}/merge_requests/{number}/notes/{comment.id}"
        self.api.call("PUT", path, {"body": body})
        return Comment(comment.id, body)

    def merged_request(self, sha: str) -> int | None:
        requests, _ = self.api.call(
            "GET", f"{self.project}/repository/commits/{sha}/merge_requests", expect=list
        )
        merged = [mr for mr in requests if mr.get("state") == "merged"]
        return _request(merged[0], "iid", "web_url", "description").number if merged else None

    def open_request(self, branch: str) -> Request | None:
        source = urllib.parse.quote(branch, safe="")
        found, _ = self.api.call(
            "GET", f"{self.project}/merge_requests?state=opened&source_branch={source}", expect=list
        )
        return _request(found[0], "iid", "web_url", "description") if found else None

    def propose(self, branch: str, base: str, title: str, body: str) -> Request:
        fields = {
            "source_branch": branch,
            "target_branch": base,
            "title": title,
            "description": body,
            "remove_source_branch": True,
        }
        made, _ = self.api.call("POST", f"{self.project}/merge_requests", fields, expect=dict)
        return _request(made, "iid", "web_url", "description")

    def edit(self, request: Request, title: str, body: str, *, close: bool = False) -> Request:
        fields = {"title": title, "description": body} | ({"state_event": "close"} if close else {})
        self.api.call("PUT", f"{self.project}/merge_requests/{request.number}", fields)
        return Request(request.number, request.url, body)


def _comment(item: dict[str, Any]) -> Comment:
    try:
        return Comment(int(item["id"]), str(item.get("body") or ""))
    except (KeyError, TypeError, ValueError):
        raise ForgeError("the answer has a comment without a numeric 'id'") from None


def _request(item: dict[str, Any], number: str, url: str, body: str) -> Request:
    """A request from the API's answer, whose field names differ between the forges."""
    try:
        return Request(int(item[number]), str(item.get(url) or ""), str(item.get(body) or ""))
    except (TypeError, KeyError, ValueError):
        raise ForgeError(f"the answer names a request without a numeric {number!r}") from None


def _header(headers: Mapping[str, str], name: str) -> str:
    return next((value for key, value in headers.items() if key.lower() == name.lower()), "")
