"""The GitHub Action (action.yml) and the GitLab CI/CD component (templates/reconcile.yml), run
step by step as their runners would, against the sandbox over HTTP and a fake GitHub/GitLab API
(tests/fake_forge.py): the plan comment is created, found again by its marker and updated, replaced
by an error when plan fails, and apply uses exactly the checksum it showed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from reconcile.sandbox import Sandbox
from tests.ci_runner import (
    ACTION,
    COMPONENT_SPEC,
    FORGE_TOKEN,
    HEAD,
    MERGED,
    component_job,
    plan_comment,
    pull_request_event,
    run_action,
    run_component,
)
from tests.fake_forge import GITHUB, GITLAB, FakeForge
from tests.helpers import DEMO_IDS, ORG, ROOT, TOKEN, write_state


def test_the_action_comments_once_and_applies_what_was_reviewed(
    sandbox: Sandbox,
    served: str,
    forge: FakeForge,
    repo: Path,
    runner_temp: Path,
    offline_pip: dict[str, str],
) -> None:
    inputs = {"tallyfy-token": TOKEN, "org": ORG, "api-url": served, "github-token": FORGE_TOKEN}
    forge.add(GITHUB, 7, "Looks good to me.")
    forge.add(GITHUB, 7, "<!-- reconcile-plan:someone-else -->\nnot ours")
    pr = pull_request_event()

    first = run_action(
        inputs, workspace=repo, runner_temp=runner_temp, forge=forge, event=pr, env=offline_pip
    )
    assert first.outcomes == {
        "Install reconcile": "success",
        "Plan": "success",
        "Post or update the plan comment": "success",
        "Job summary": "success",
        "Find the reviewed plan": "skipped",
        "Apply exactly the reviewed plan": "skipped",
        "Refresh the state files from Tallyfy": "skipped",
        "Propose the accepted drift": "skipped",
    }, first.logs
    body = plan_comment(forge, GITHUB, 7)
    assert body.startswith(f"<!-- reconcile-plan:{ORG} -->\n### reconcile plan\n")
    assert f"commit `{HEAD[:12]}`" in body
    assert "[CI run](https://github.example/acme/runs/actions/runs/4242)" in body
    assert "**Plan: 2 to archive, 1 to activate, 7 unchanged.**" in body
    assert "3 requested (the declaration changed), 0 drift" in body, "baseline: origin/main"
    checksum = re.findall(r"<!-- reconcile-checksum:([0-9a-f]{64}):state.toml -->", body)
    assert len(checksum) == 1
    assert first.summary == body.split("\n", 1)[1]
    assert sandbox.writes == []
    created = [(r.method, r.path) for r in forge.writes()]
    assert created == [("POST", "/repos/acme/runs/issues/7/comments")]

    # The next push: the same comment is found (on the second page) and updated in place.
    second = run_action(
        inputs, workspace=repo, runner_temp=runner_temp, forge=forge, event=pr, env=offline_pip
    )
    assert second.outcomes["Post or update the plan comment"] == "success", second.logs
    assert len(forge.bodies(GITHUB, 7)) == 3
    assert [r.method for r in forge.writes()] == ["POST", "PATCH"]
    assert any(r.query.get("page") == "2" for r in forge.requests if r.method == "GET")

    # Fixed again and merged: apply finds the merged pull request's comment and its checksum.
    shutil.copy(ROOT / "state.example.toml", repo / "state.toml")
    run_action(
        inputs, workspace=repo, runner_temp=runner_temp, forge=forge, event=pr, env=offline_pip
    )
    forge.merged[MERGED] = 7
    push = {"after": MERGED}
    applied = run_action(
        {**inputs, "command": "apply"},
        workspace=repo,
        runner_temp=runner_temp,
        forge=forge,
        event=push,
        env=offline_pip,
    )
    assert applied.outcomes["Apply exactly the reviewed plan"] == "success", applied.logs
    assert applied.outcomes["Post or update the plan comment"] == "skipped"
    assert len(sandbox.writes) == 3
    report = json.loads((runner_temp / "reconcile-results" / "report-1.json").read_text())
    assert report["summary"]["ok"] == 3

    # Drift after review: the same checksum no longer matches, and nothing is written.
    sandbox.set_archived(DEMO_IDS[4], True)
    refused = run_action(
        {**inputs, "command": "apply"},
        workspace=repo,
        runner_temp=runner_temp,
        forge=forge,
        event=push,
        env=offline_pip,
    )
    assert refused.outcomes["Apply exactly the reviewed plan"] == "failure"
    assert len(sandbox.writes) == 3


def test_a_failed_or_refused_plan_replaces_the_comment_and_fails_the_check(
    sandbox: Sandbox,
    served: str,
    forge: FakeForge,
    repo: Path,
    runner_temp: Path,
    offline_pip: dict[str, str],
) -> None:
    inputs = {"tallyfy-token": TOKEN, "org": ORG, "api-url": served, "github-token": FORGE_TOKEN}
    pr = pull_request_event()
    run_action(
        inputs, workspace=repo, runner_temp=runner_temp, forge=forge, event=pr, env=offline_pip
    )
    assert "reconcile-checksum" in plan_comment(forge, GITHUB, 7)

    # A push that breaks the file: the job fails, and the comment no longer offers a checksum.
    (repo / "state.toml").write_text("[runs]\nnot a run = 1\n")
    broken = run_action(
        inputs, workspace=repo, runner_temp=runner_temp, forge=forge, event=pr, env=offline_pip
    )
    assert broken.outcomes["Plan"] == "failure"
    assert broken.outcomes["Post or update the plan comment"] == "success"
    assert broken.outcomes["Job summary"] == "success"
    error = plan_comment(forge, GITHUB, 7)
    assert "### reconcile plan **failed**" in error
    assert "**There is no plan to apply** for `state.toml`" in error
    assert "Error: " in error
    assert "state.toml" in error
    assert "reconcile-checksum" not in error
    assert len(forge.bodies(GITHUB, 7)) == 1

    # A push that apply would refuse (it archives every active run): red check, reason shown.
    path = write_state(repo / "state.toml", dict.fromkeys(DEMO_IDS, "archived"))
    path.write_text("[safety]\nmin_runs = 5\n" + path.read_text())
    gated = run_action(
        inputs, workspace=repo, runner_temp=runner_temp, forge=forge, event=pr, env=offline_pip
    )
    assert gated.outcomes["Plan"] == "failure"
    refusal = plan_comment(forge, GITHUB, 7)
    assert "`reconcile plan` exited 3:" in refusal
    assert "> **Warning:** apply would refuse: the plan would archive 7 of the 7" in refusal
    assert "reconcile-checksum" not in refusal

    assert [r.method for r in forge.writes()] == ["POST", "PATCH", "PATCH"]
    assert sandbox.writes == []


def test_each_action_step_gets_only_the_token_it_needs() -> None:
    for step in ACTION["runs"]["steps"]:
        env = json.dumps(step.get("env", {}))
        tallyfy, github = "inputs.tallyfy-token" in env, "inputs.github-token" in env
        assert (tallyfy, github) == {
            "Plan": (True, False),
            "Apply exactly the reviewed plan": (True, False),
            "Post or update the plan comment": (False, True),
            "Find the reviewed plan": (False, True),
            "Refresh the state files from Tallyfy": (True, False),
            "Propose the accepted drift": (False, True),
        }.get(step["name"], (False, False)), step["name"]
        assert "${{" not in step["run"], "expressions go through env, never into the script"


def test_the_gitlab_component_keeps_one_note_applies_what_was_reviewed_and_can_replan(
    sandbox: Sandbox,
    served: str,
    forge: FakeForge,
    repo: Path,
    wheel: Path,
    offline_pip: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    inputs = {"org": ORG, "install": str(wheel)}
    env = {
        **offline_pip,
        "TMPDIR": str(tmp_path_factory.mktemp("gitlab-tmp")),
        "GITLAB_CI": "true",
        "CI_API_V4_URL": forge.gitlab_url,
        "CI_PROJECT_ID": "42",
        "CI_JOB_URL": "https://gitlab.example/acme/runs/-/jobs/99",
        "GITLAB_API_TOKEN": FORGE_TOKEN,
        "TALLYFY_ACCESS_TOKEN": TOKEN,
        "TALLYFY_API_URL": served,
    }
    review = {
        **env,
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_MERGE_REQUEST_IID": "5",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_COMMIT_SHA": HEAD,
    }
    forge.add(GITLAB, 5, "A note from a reviewer.")
    planned = run_component("reconcile-plan", inputs, workspace=repo, env=review)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    again = run_component("reconcile-plan", inputs, workspace=repo, env=review)
    assert again.returncode == 0, again.stderr
    assert [(r.method, r.path) for r in forge.writes()] == [
        ("POST", "/projects/42/merge_requests/5/notes"),
        ("PUT", "/projects/42/merge_requests/5/notes/1002"),
    ]
    note = plan_comment(forge, GITLAB, 5)
    assert "3 requested (the declaration changed), 0 drift" in note
    assert "[CI run](https://gitlab.example/acme/runs/-/jobs/99)" in note

    (repo / "state.toml").write_text('[tallyfy]\norg_id = "nope"\n[runs]\n')
    failed = run_component("reconcile-plan", inputs, workspace=repo, env=review)
    assert failed.returncode == 1
    assert "**There is no plan to apply**" in plan_comment(forge, GITLAB, 5)

    shutil.copy(ROOT / "state.example.toml", repo / "state.toml")
    assert run_component("reconcile-plan", inputs, workspace=repo, env=review).returncode == 0
    forge.merged[MERGED] = 5
    main = {**env, "CI_PIPELINE_SOURCE": "push", "CI_COMMIT_SHA": MERGED}
    sandbox.set_archived(DEMO_IDS[4], True)
    refused = run_component("reconcile-apply", inputs, workspace=repo, env=main)
    assert refused.returncode == 3, "drift since review: the checksum no longer matches"
    assert sandbox.writes == []

    replanned = run_component("reconcile-replan-apply", inputs, workspace=repo, env=main)
    assert replanned.returncode == 0, replanned.stderr
    assert len(sandbox.writes) == 4
    drift = run_component("reconcile-drift", inputs, workspace=repo, env=main)
    assert drift.returncode == 0, "after the re-plan and apply, nothing differs"


def test_the_component_runs_in_an_image_with_git_and_one_apply_per_organization() -> None:
    spec = yaml.safe_load(COMPONENT_SPEC)["spec"]
    assert spec["inputs"]["image"]["default"] == "python:3.11", "the full image ships git"
    for name in ("reconcile-apply", "reconcile-replan-apply"):
        assert component_job(name, {"org": ORG})["resource_group"] == f"reconcile-{ORG}"
    manual = component_job("reconcile-replan-apply", {"org": ORG})["rules"][0]
    assert manual["when"] == "manual"
