"""What GitHub or GitLab answers is checked before it is used: an answer of the wrong shape, a
missing number or ID, a refused token or missing results from the step before are each one line
naming the request, exit 1, never a traceback, and nothing is written."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reconcile.ci import accept, review
from reconcile.cli.ci import cli
from tests.ci_runner import FORGE_TOKEN
from tests.fake_forge import FakeForge
from tests.helpers import ORG

HOSTILE: list[tuple[Any, str]] = [
    ({"message": "a page, not a list"}, "answered JSON that is not a list of objects"),
    ([1, 2, 3], "answered JSON that is not a list of objects"),
    ("pulls", "answered JSON that is not a list of objects"),
    (None, "answered JSON that is not a list of objects"),
    ([{"number": "seven", "iid": "seven"}], "without a numeric"),
    ([{"html_url": "https://example.com"}], "without a numeric"),
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """What `reconcile-ci refresh` saves when one file changed."""
    plan = review.Outcome("state.toml", 2, "**Plan**", "", ORG, "0" * 64)
    changed = accept.Refreshed(
        "state.toml", 2, "--- a\n+++ b\nstate.toml was refreshed.\n", "", plan
    )
    saved = tmp_path / "results"
    saved.mkdir()
    (saved / accept.ACCEPTED).write_text(json.dumps([asdict(changed)]))
    return saved


def env_for(forge: FakeForge, kind: str, token: str = FORGE_TOKEN) -> dict[str, str]:
    if kind == "github":
        return {
            "GITHUB_ACTIONS": "true",
            "GITHUB_API_URL": forge.github_url,
            "GITHUB_REPOSITORY": "acme/runs",
            "GITHUB_TOKEN": token,
            "GITHUB_REF_NAME": "main",
            "GITLAB_CI": "",
        }
    return {
        "GITLAB_CI": "true",
        "GITHUB_ACTIONS": "",
        "CI_API_V4_URL": forge.gitlab_url,
        "CI_PROJECT_ID": "42",
        "CI_SERVER_URL": "https://gitlab.example",
        "CI_PROJECT_PATH": "acme/runs",
        "CI_COMMIT_BRANCH": "main",
        "GITLAB_API_TOKEN": token,
    }


def reconcile_ci(*args: str, env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def one_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ")
    return line


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("github", "/repos/acme/runs/pulls"),
        ("gitlab", "/projects/42/merge_requests"),
    ],
)
@pytest.mark.parametrize(("answer", "said"), HOSTILE)
def test_a_hostile_listing_of_requests_is_one_line_and_nothing_is_written(
    forge: FakeForge, folder: Path, kind: str, path: str, answer: Any, said: str
) -> None:
    forge.answers[path] = answer
    line = one_error(reconcile_ci("propose", "--dir", str(folder), env=env_for(forge, kind)))
    assert said in line
    assert f"GET /{kind}" in line or "the answer names a request" in line
    assert forge.writes() == []


@pytest.mark.parametrize("answer", [{"id": "x"}, [], {"body": "no id"}])
def test_a_hostile_answer_to_a_new_comment_is_one_line(
    forge: FakeForge, tmp_path: Path, answer: Any
) -> None:
    saved = tmp_path / "results"  # what the plan step saves
    saved.mkdir()
    outcome = review.Outcome("state.toml", 0, "No changes.", "", ORG)
    (saved / review.RESULTS).write_text(json.dumps([asdict(outcome)]))
    forge.answers["/repos/acme/runs/issues/7/comments"] = answer
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7, "head": {"sha": "c" * 40}}}))
    env = {**env_for(forge, "github"), "GITHUB_EVENT_PATH": str(event)}
    line = one_error(reconcile_ci("comment", "--dir", str(saved), env=env))
    assert "/repos/acme/runs/issues/7/comments" in line or "numeric 'id'" in line


def test_a_refused_token_names_the_request(forge: FakeForge, folder: Path) -> None:
    env = env_for(forge, "gitlab", token="wrong")
    line = one_error(reconcile_ci("propose", "--dir", str(folder), env=env))
    assert "GitLab: GET /gitlab/api/v4/projects/42/merge_requests" in line
    assert "answered 401" in line


@pytest.mark.parametrize("step", ["propose", "comment", "summary"])
def test_a_step_without_the_results_of_the_one_before_says_so(
    forge: FakeForge, tmp_path: Path, step: str
) -> None:
    line = one_error(
        reconcile_ci(step, "--dir", str(tmp_path / "none"), env=env_for(forge, "github"))
    )
    assert "holds no results" in line
    assert forge.requests == []
