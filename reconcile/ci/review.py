"""Plan every state file for review, keep one comment on the pull (merge) request that shows the
result, and apply on the default branch exactly what that comment showed.

The comment is found by its first line, a hidden marker. Each state file's checksum is carried
in a hidden line of its own (`<!-- reconcile-checksum:HEX:PATH -->`), so the apply job does not
depend on the wording of the Markdown plan. A failed plan replaces the comment with an error and
no checksum, so nothing stale can be applied.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from reconcile.ci.forge import Forge

RESULTS = "results.json"
COMMENT_LIMIT = 65_000
"""GitHub refuses a comment over 65,536 characters; GitLab allows more, so one limit does."""
EXIT_CHANGES = 2
CUT = "_(cut to fit; the whole text is in the CI run.)_"
_CHECKSUM = re.compile(r"^<!-- reconcile-checksum:([0-9a-f]{64}):(.+?) -->$", re.MULTILINE)


@dataclass(frozen=True)
class Outcome:
    """What `reconcile plan` said about one state file."""

    state_file: str
    exit_code: int
    markdown: str
    error: str
    org_id: str | None = None
    checksum: str | None = None
    """Set only when the plan has changes to apply."""

    @property
    def failed(self) -> bool:
        return self.exit_code not in (0, EXIT_CHANGES)


@dataclass(frozen=True)
class Context:
    """Where the comment comes from: the commit planned and the CI run that planned it."""

    commit: str
    run_url: str


def marker(key: str) -> str:
    return f"<!-- reconcile-plan:{key} -->"


def reconcile_command(*args: str) -> list[str]:
    """The reconcile installed beside this program, whatever PATH says."""
    return [sys.executable, "-m", "reconcile", *args]


def plan(files: Sequence[str], folder: Path, baseline_ref: str | None) -> list[Outcome]:
    """Plan each file (Markdown on stdout, JSON to plan-N.json in `folder`), then save every
    outcome to results.json there for the comment and summary steps."""
    folder.mkdir(parents=True, exist_ok=True)
    # The summary step writes the job summary, with every file and any error, once.
    env = {key: value for key, value in os.environ.items() if key != "GITHUB_STEP_SUMMARY"}
    outcomes = []
    for number, state_file in enumerate(files, 1):
        saved = folder / f"plan-{number}.json"
        saved.unlink(missing_ok=True)
        args = ["plan", state_file, "--detailed-exitcode", "--format", "markdown"]
        args += ["--out", str(saved)]
        if baseline_ref:
            args += ["--baseline-ref", baseline_ref]
        done = subprocess.run(
            reconcile_command(*args), capture_output=True, text=True, check=False, env=env
        )
        document = json.loads(saved.read_text(encoding="utf-8")) if saved.exists() else {}
        outcomes.append(
            Outcome(
                state_file=state_file,
                exit_code=done.returncode,
                markdown=done.stdout,
                error=done.stderr,
                org_id=document.get("org_id"),
                checksum=document.get("checksum") if done.returncode == EXIT_CHANGES else None,
            )
        )
    results = [asdict(outcome) for outcome in outcomes]
    (folder / RESULTS).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return outcomes


def load(folder: Path) -> list[Outcome]:
    """The outcomes that `plan` saved in `folder`."""
    return [Outcome(**entry) for entry in json.loads((folder / RESULTS).read_text("utf-8"))]


def exit_code(outcomes: Sequence[Outcome], *, detailed: bool = False) -> int:
    """The first failure's code; else 0, or with `detailed` 2 when any plan has changes (a
    drift check's alarm)."""
    failed = next((outcome.exit_code for outcome in outcomes if outcome.failed), 0)
    changed = any(outcome.exit_code == EXIT_CHANGES for outcome in outcomes)
    return failed or (EXIT_CHANGES if detailed and changed else 0)


def fenced(text: str, language: str = "") -> str:
    """`text` as a Markdown code block whose fence no line of it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def fit(text: str, room: int, *, code: str | None = None) -> str:
    """`text` cut at a line end to fit in about `room` characters, saying so when it was cut;
    with `code`, fenced as a code block in that language."""
    shown = text if len(text) <= room else text[:room].rsplit("\n", 1)[0]
    block = shown if code is None else fenced(shown, code)
    return block if shown == text else f"{block}\n\n{CUT}"


def provenance(outcomes: Sequence[Outcome], context: Context) -> str:
    """One line: the organizations planned, the commit, and the CI run."""
    orgs = sorted({outcome.org_id for outcome in outcomes if outcome.org_id})
    where = f"commit `{context.commit[:12]}`" + (
        f", [CI run]({context.run_url})" if context.run_url else ""
    )
    return (f"Organization `{'`, `'.join(orgs)}`, " if orgs else "") + where + "."


def summary(outcomes: Sequence[Outcome], context: Context) -> str:
    """The Markdown for the comment and the job summary: a heading that says whether there is
    a plan to apply, then one section per state file."""
    failed = [outcome for outcome in outcomes if outcome.failed]
    title = "reconcile plan **failed**" if failed else "reconcile plan"
    lines = [f"### {title}", "", provenance(outcomes, context)]
    if failed:
        lines += [
            "",
            "**There is no plan to apply** for "
            + ", ".join(f"`{outcome.state_file}`" for outcome in failed)
            + ": fix the error below and push again. Any earlier plan in this comment, and its"
            " checksum, is withdrawn.",
        ]
    room = (COMMENT_LIMIT - 2_000) // max(1, len(outcomes))
    for outcome in outcomes:
        lines += ["", f"#### `{outcome.state_file}`", ""]
        if outcome.failed:
            # Exit 3 comes with the whole plan, its reasons among the warnings: both are shown.
            lines += [f"`reconcile plan` exited {outcome.exit_code}:", "", fenced(outcome.error)]
            if not outcome.markdown.strip():
                continue
            lines.append("")
        lines.append(fit(outcome.markdown.rstrip(), room))
        if outcome.checksum:
            lines += ["", f"<!-- reconcile-checksum:{outcome.checksum}:{outcome.state_file} -->"]
    return "\n".join(lines) + "\n"


def post(forge: Forge, number: int, key: str, body: str) -> str:
    """Update the request's comment that starts with the marker, or create it; says which."""
    head = marker(key)
    text = f"{head}\n{body}"
    previous = next((c for c in forge.comments(number) if c.body.startswith(head)), None)
    if previous is None:
        forge.create(number, text)
        return "created"
    forge.update(number, previous, text)
    return "updated"


def reviewed(forge: Forge, sha: str, key: str) -> tuple[int | None, dict[str, str]]:
    """The request that `sha` was merged from, and the checksum its comment showed for each
    state file (none when the plan had no changes or failed)."""
    number = forge.merged_request(sha)
    if number is None:
        return None, {}
    head = marker(key)
    comment = next((c for c in forge.comments(number) if c.body.startswith(head)), None)
    if comment is None:
        return number, {}
    return number, {path: digest for digest, path in _CHECKSUM.findall(comment.body)}


def apply(files: Sequence[str], checksums: Mapping[str, str], folder: Path) -> int:
    """Apply each file's reviewed plan (`apply --checksum`); a file reviewed without changes
    must still have none (`plan --detailed-exitcode`). Returns the first failure's exit code."""
    folder.mkdir(parents=True, exist_ok=True)
    first = 0
    for number, state_file in enumerate(files, 1):
        digest = checksums.get(state_file)
        if digest:
            args = ["apply", state_file, "--checksum", digest]
            args += ["--report", str(folder / f"report-{number}.json")]
        else:
            args = ["plan", state_file, "--detailed-exitcode"]
        code = subprocess.run(reconcile_command(*args), check=False).returncode
        first = first or code
    return first
