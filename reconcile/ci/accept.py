"""Accept drift as a reviewed change: refresh each state file from Tallyfy, then propose the
result as one pull (merge) request from a branch that reconcile owns.

The request shows, per state file, the diff that `reconcile refresh` made and the plan made just
before it, whose table says who moved each run and when. Each scheduled run keeps that one
request current: it opens it, force-pushes a new commit and rewrites its description when the
drift changed, leaves it alone when nothing did, and closes it when Tallyfy matches the files
again. Merging it changes only the files: nothing is written to Tallyfy.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from reconcile.ci import review
from reconcile.ci.forge import Forge
from reconcile.ci.git import Checkout

ACCEPTED = "accepted.json"
BRANCH = "reconcile/accept-drift"
_OWN = 2_000
"""Room kept for the heading and the explanation."""
_EACH = 500
"""Room kept for each file's heading, summary, fences and notes."""


@dataclass(frozen=True)
class Refreshed:
    """What `reconcile refresh` did to one state file, and the plan made just before it."""

    state_file: str
    exit_code: int
    """Refresh's: 0 the file matches Tallyfy, 2 it was rewritten, anything else an error."""
    output: str
    """The unified diff, then the one-line summary."""
    error: str
    plan: review.Outcome

    @property
    def changed(self) -> bool:
        return self.exit_code == review.EXIT_CHANGES

    @property
    def failed(self) -> bool:
        return self.exit_code not in (0, review.EXIT_CHANGES)

    @property
    def diff(self) -> str:
        return self.output.rstrip("\n").rpartition("\n")[0]

    @property
    def summary(self) -> str:
        return self.output.rstrip("\n").rpartition("\n")[2]


def refresh(
    files: Sequence[str], folder: Path, *, prune: bool = False, names: bool = False
) -> list[Refreshed]:
    """Plan each file (for who moved what), then refresh it in place; save both to
    accepted.json in `folder` for the step that proposes them."""
    plans = review.plan(files, folder, None)
    options = ["--detailed-exitcode"] + ["--prune"] * prune + ["--names"] * names
    refreshed = []
    for plan in plans:
        done = subprocess.run(
            review.reconcile_command("refresh", plan.state_file, *options),
            capture_output=True,
            text=True,
            check=False,
        )
        refreshed.append(
            Refreshed(plan.state_file, done.returncode, done.stdout, done.stderr, plan)
        )
    saved = [asdict(entry) for entry in refreshed]
    (folder / ACCEPTED).write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8")
    return refreshed


def load(folder: Path) -> list[Refreshed]:
    """What `refresh` saved in `folder`."""
    entries = json.loads((folder / ACCEPTED).read_text(encoding="utf-8"))
    return [Refreshed(**{**entry, "plan": review.Outcome(**entry["plan"])}) for entry in entries]


def exit_code(refreshed: Sequence[Refreshed]) -> int:
    """The first failed refresh's exit code, else 0."""
    return next((entry.exit_code for entry in refreshed if entry.failed), 0)


def title(refreshed: Sequence[Refreshed]) -> str:
    changed = [entry.state_file for entry in refreshed if entry.changed]
    where = f"`{changed[0]}`" if len(changed) == 1 else f"{len(changed)} state files"
    return f"reconcile: accept drift from Tallyfy into {where}"


def body(refreshed: Sequence[Refreshed], context: review.Context, noun: str) -> str:
    """The request's description: what merging means, then each changed file's diff and the
    plan made before the refresh. Bounded to what GitHub and GitLab accept."""
    changed = [entry for entry in refreshed if entry.changed]
    lines = [
        "### reconcile: accept drift",
        "",
        review.provenance([entry.plan for entry in refreshed], context),
        "",
        "Runs were archived or activated in Tallyfy, outside this repository. Merging this "
        f"{noun} writes their live state into the state files, so that the next plan has no "
        "changes; nothing is written to Tallyfy. Closing it keeps the declarations: the next "
        "apply moves the runs back.",
    ]
    room = (review.COMMENT_LIMIT - _OWN) // max(1, len(changed)) - _EACH
    for entry in changed:
        plan = _without_checksum(entry.plan.markdown) or review.fenced(entry.plan.error)
        lines += [
            "",
            f"#### `{entry.state_file}`",
            "",
            entry.summary,
            "",
            review.fit(entry.diff, room // 2, code="diff"),
            "",
            "Without this change, the next apply would carry out this plan (made before the "
            "refresh), which says who moved each run:",
            "",
            review.fit(plan, room // 2),
        ]
    return "\n".join(lines) + "\n"


def _without_checksum(markdown: str) -> str:
    """The plan's Markdown without its checksum line: that plan reverts the drift, and is shown
    here to be read, not applied."""
    lines = markdown.strip().splitlines()
    return "\n".join(line for line in lines if not line.startswith("Checksum: ")).strip()


def closing(noun: str) -> str:
    return (
        "### reconcile: accept drift\n\nTallyfy matches the state files again, so there is no "
        f"drift to accept: this {noun} was closed by reconcile.\n"
    )


def propose(
    forge: Forge,
    checkout: Checkout,
    refreshed: Sequence[Refreshed],
    *,
    branch: str,
    base: str,
    context: review.Context,
) -> str:
    """Open, update or close the one request from `branch`; says what was done."""
    noun = forge.request_noun
    current = forge.open_request(branch)
    changed = [entry for entry in refreshed if entry.changed]
    if not changed:
        if current is None:
            return "Tallyfy matches every state file: there is no drift to accept."
        forge.edit(current, "reconcile: no drift to accept", closing(noun), close=True)
        return f"Tallyfy matches every state file again: closed {noun} {current.url}."
    heading = title(refreshed)
    message = "\n".join([heading.replace("`", ""), "", *(entry.summary for entry in changed)])
    sha = checkout.commit([entry.state_file for entry in changed], message)
    pushed = checkout.remote_branch(branch)
    moved = pushed is None or not checkout.same_proposal(pushed, sha)
    if moved:
        checkout.push(sha, branch)
    text = body(refreshed, context, noun)
    if current is None:
        made = forge.propose(branch, base, heading, text)
        return f"Opened {noun} {made.url} from {branch}."
    if current.body != text:
        forge.edit(current, heading, text)
    said = "pushed a new commit to" if moved else "left unchanged"
    return f"Updated {noun} {current.url}; {said} {branch}."
