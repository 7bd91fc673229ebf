"""A fake of GitHub's and GitLab's REST APIs for comments and pull (merge) requests, over real
HTTP on loopback.

One server answers both: GitHub under `forge.github_url` (as GITHUB_API_URL), GitLab under
`forge.gitlab_url` (as CI_API_V4_URL). It checks the token as the real ones do, paginates as they
do (GitHub's `Link: <...>; rel="next"`, GitLab's `X-Next-Page`), keeps every comment and request,
and logs every call for the test to assert on. Pull-request numbers and merge-request IIDs share
one table of comments per forge. Opening a request is refused as the real ones refuse it (422 on
GitHub, 409 or 422 on GitLab) when the head branch is missing from `forge.repository` (a bare
git repository), has nothing the base lacks, or already has an open request.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

GITHUB = "github"
GITLAB = "gitlab"


@dataclass(frozen=True)
class ForgeRequest:
    forge: str
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class FakeForge:
    token: str = "forge-token"
    page_size: int = 100
    """At most this many comments per page, whatever per_page asks: small values test paging."""
    comments: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    merged: dict[str, int] = field(default_factory=dict)
    """Merge commit SHA -> the number of the request it was merged from (both forges)."""
    requests: list[ForgeRequest] = field(default_factory=list)
    pulls: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    """(forge, number) -> the pull (merge) request: title, body, head, base, state."""
    repository: Path | None = None
    """The bare git repository the requests' branches live in."""
    answers: dict[str, Any] = field(default_factory=dict)
    """Path (without the forge's prefix) -> what to answer instead, with 200: a hostile forge."""
    url: str = ""
    _ids: Iterator[int] = field(default_factory=lambda: iter(range(1001, 10**9)))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def github_url(self) -> str:
        return f"{self.url}/github"

    @property
    def gitlab_url(self) -> str:
        return f"{self.url}/gitlab/api/v4"

    def add(self, forge: str, number: int, body: str) -> int:
        """A comment someone else wrote; returns its ID."""
        with self._lock:
            comment_id = next(self._ids)
            self.comments.setdefault((forge, number), []).append({"id": comment_id, "body": body})
            return comment_id

    def bodies(self, forge: str, number: int) -> list[str]:
        return [str(comment["body"]) for comment in self.comments.get((forge, number), [])]

    def open_pulls(self, forge: str) -> list[dict[str, Any]]:
        return [p for (kind, _), p in self.pulls.items() if kind == forge and p["state"] == "open"]

    def _refusal(self, forge: str, head: str, base: str) -> str | None:
        """Why the forge would refuse to open a request from `head` into `base`, if it would."""
        if any(p["head"] == head and p["base"] == base for p in self.open_pulls(forge)):
            return f"A pull request already exists for {head}."
        if self.repository is None:
            return None
        shas = []
        for branch in (head, base):
            found = subprocess.run(
                [
                    "git",
                    "--git-dir",
                    str(self.repository),
                    "rev-parse",
                    "--verify",
                    "-q",
                    f"refs/heads/{branch}",
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
            if found.returncode != 0:
                return f"Invalid branch: {branch}"
            shas.append(found.stdout.strip())
        return f"No commits between {base} and {head}" if shas[0] == shas[1] else None

    def _open(self, forge: str, head: str, base: str, title: str, body: str) -> tuple[int, Any]:
        if refusal := self._refusal(forge, head, base):
            return (422 if forge == GITHUB else 409), {"message": refusal}
        with self._lock:
            number = 1 + max((n for kind, n in self.pulls if kind == forge), default=0)
            pull = {
                "number": number,
                "title": title,
                "body": body,
                "head": head,
                "base": base,
                "state": "open",
                "url": f"https://{forge}.example/acme/runs/pull/{number}",
            }
            self.pulls[(forge, number)] = pull
        return 201, pull

    def writes(self) -> list[ForgeRequest]:
        return [r for r in self.requests if r.method in {"POST", "PUT", "PATCH", "DELETE"}]

    def answer(
        self, method: str, target: str, headers: Any, body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(target)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        forge = GITHUB if parts.path.startswith("/github/") else GITLAB
        path = parts.path.removeprefix("/github").removeprefix("/gitlab/api/v4")
        with self._lock:
            self.requests.append(ForgeRequest(forge, method, path, query, body))
        if path in self.answers:
            return 200, self.answers[path], {}
        if forge == GITHUB:
            if headers.get("Authorization") != f"Bearer {self.token}":
                return 401, {"message": "Bad credentials"}, {}
            return self._github(method, path, query, body)
        if headers.get("PRIVATE-TOKEN") != self.token:
            return 401, {"message": "401 Unauthorized"}, {}
        return self._gitlab(method, path, query, body)

    def _page(self, forge: str, number: int, query: dict[str, str]) -> tuple[list[Any], bool]:
        size = min(int(query.get("per_page", "30")), self.page_size)
        page = int(query.get("page", "1"))
        every = self.comments.get((forge, number), [])
        return every[(page - 1) * size : page * size], page * size < len(every)

    def _github(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if found := re.fullmatch(r"/repos/[^/]+/[^/]+/issues/(\d+)/comments", path):
            number = int(found[1])
            if method == "POST":
                return 201, {"id": self.add(GITHUB, number, body["body"]), "body": body["body"]}, {}
            items, more = self._page(GITHUB, number, query)
            headers = {}
            if more:
                page = int(query.get("page", "1")) + 1
                headers["Link"] = (
                    f"<{self.github_url}{path}?per_page={query.get('per_page', '30')}&page={page}>;"
                    ' rel="next"'
                )
            return 200, items, headers
        if (
            found := re.fullmatch(r"/repos/[^/]+/[^/]+/issues/comments/(\d+)", path)
        ) and method == "PATCH":
            return self._edit(GITHUB, int(found[1]), body["body"])
        if repository := re.fullmatch(r"/repos/([^/]+)/[^/]+/pulls", path):
            if method == "POST":
                status, pull = self._open(
                    GITHUB, body["head"], body["base"], body["title"], body.get("body") or ""
                )
                return status, _github_pull(pull) if status == 201 else pull, {}
            owner, _, head = query.get("head", ":").partition(":")
            wanted = query.get("state", "open")
            found_pulls = [
                _github_pull(p)
                for (kind, _), p in sorted(self.pulls.items())
                if kind == GITHUB
                and wanted in ("all", p["state"])
                and (not head or (owner == repository[1] and p["head"] == head))
            ]
            return 200, found_pulls, {}
        if (found := re.fullmatch(r"/repos/[^/]+/[^/]+/pulls/(\d+)", path)) and method == "PATCH":
            pull = self.pulls.get((GITHUB, int(found[1])))
            if pull is None:
                return 404, {"message": "Not Found"}, {}
            pull.update({key: body[key] for key in ("title", "body", "state") if key in body})
            return 200, _github_pull(pull), {}
        if found := re.fullmatch(r"/repos/[^/]+/[^/]+/commits/([0-9a-f]+)/pulls", path):
            merged = self.merged.get(found[1])
            pulls = (
                [] if merged is None else [{"number": merged, "merged_at": "2026-12-01T10:00:00Z"}]
            )
            return 200, pulls, {}
        return 404, {"message": "Not Found"}, {}

    def _gitlab(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if found := re.fullmatch(r"/projects/[^/]+/merge_requests/(\d+)/notes", path):
            number = int(found[1])
            if method == "POST":
                return 201, {"id": self.add(GITLAB, number, body["body"]), "body": body["body"]}, {}
            items, more = self._page(GITLAB, number, query)
            next_page = str(int(query.get("page", "1")) + 1) if more else ""
            return 200, items, {"X-Next-Page": next_page}
        if (
            found := re.fullmatch(r"/projects/[^/]+/merge_requests/\d+/notes/(\d+)", path)
        ) and method == "PUT":
            return self._edit(GITLAB, int(found[1]), body["body"])
        if re.fullmatch(r"/projects/[^/]+/merge_requests", path):
            if method == "POST":
                status, pull = self._open(
                    GITLAB,
                    body["source_branch"],
                    body["target_branch"],
                    body["title"],
                    body.get("description") or "",
                )
                return status, _gitlab_request(pull) if status == 201 else pull, {}
            wanted = {"opened": "open", "closed": "closed"}.get(query.get("state", ""), "")
            found_requests = [
                _gitlab_request(p)
                for (kind, _), p in sorted(self.pulls.items())
                if kind == GITLAB
                and wanted in ("", p["state"])
                and query.get("source_branch", p["head"]) == p["head"]
            ]
            return 200, found_requests, {"X-Next-Page": ""}
        if (
            found := re.fullmatch(r"/projects/[^/]+/merge_requests/(\d+)", path)
        ) and method == "PUT":
            pull = self.pulls.get((GITLAB, int(found[1])))
            if pull is None:
                return 404, {"message": "404 Not found"}, {}
            pull.update({key: body[key] for key in ("title",) if key in body})
            if "description" in body:
                pull["body"] = body["description"]
            if body.get("state_event") == "close":
                pull["state"] = "closed"
            return 200, _gitlab_request(pull), {}
        if found := re.fullmatch(
            r"/projects/[^/]+/repository/commits/([0-9a-f]+)/merge_requests", path
        ):
            merged = self.merged.get(found[1])
            return 200, [] if merged is None else [{"iid": merged, "state": "merged"}], {}
        return 404, {"message": "404 Not Found"}, {}

    def _edit(self, forge: str, comment_id: int, text: str) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            for (kind, _), comments in self.comments.items():
                for comment in comments:
                    if kind == forge and comment["id"] == comment_id:
                        comment["body"] = text
                        return 200, comment, {}
        return 404, {"message": "Not Found"}, {}


def _github_pull(pull: dict[str, Any]) -> dict[str, Any]:
    return {
        "number": pull["number"],
        "html_url": pull["url"],
        "title": pull["title"],
        "body": pull["body"],
        "state": pull["state"],
        "head": {"ref": pull["head"]},
        "base": {"ref": pull["base"]},
    }


def _gitlab_request(pull: dict[str, Any]) -> dict[str, Any]:
    return {
        "iid": pull["number"],
        "web_url": pull["url"],
        "title": pull["title"],
        "description": pull["body"],
        "state": "opened" if pull["state"] == "open" else pull["state"],
        "source_branch": pull["head"],
        "target_branch": pull["base"],
    }


@contextmanager
def serve_forge(forge: FakeForge) -> Iterator[FakeForge]:
    """Serve `forge` on an ephemeral loopback port until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, payload, headers = forge.answer(
                self.command, self.path, self.headers, json.loads(raw) if raw else None
            )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = _handle

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the request log is forge.requests."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    forge.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield forge
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
