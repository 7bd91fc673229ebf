"""The library's entry points: what `reconcile validate`, `plan`, `apply` and `import` do, without
printing. Each opens its input, resolves the settings (reconcile.config), reads the organization
through one client, builds the plan with everything attached (the limits and the gates it trips,
the baseline's labels, unmanaged runs, what is left of a saved plan), checks it (reconcile.safety)
and carries it out. The CLI, the benchmark and the tests all call these.

    from reconcile.config import Flags
    from reconcile import pipeline

    planned = pipeline.plan("state.toml", Flags(org_id="..."))
    outcome = pipeline.apply("state.toml", Flags(org_id="..."), expected_checksum="...")
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from reconcile.apply import ApplyReport, Interruption, Result, apply_plan
from reconcile.attribution import attach, attributed_changes, needs_setting, timestamp
from reconcile.baseline import read_baseline
from reconcile.config import Flags, Settings, resolve
from reconcile.differences import compare_declarations, declared
from reconcile.domain import ObservedRun
from reconcile.drift import label_changes
from reconcile.errors import ApiError, ConfigError
from reconcile.importer import Imported, Mode, build_import, existing_file
from reconcile.listing import select_runs
from reconcile.plan import Plan, build_plan
from reconcile.planfile import load_plan
from reconcile.refresh import Refreshed, check_editable, refresh_text
from reconcile.safety import (
    check_before_writes,
    check_gone,
    check_saved_checksum,
    check_target,
    parse_checksum,
    remaining,
    tripped,
)
from reconcile.selection import Selection
from reconcile.sources import Reads
from reconcile.state import StateFile, TallyfySettings, load_state
from reconcile.tallyfy import TallyfyClient, observe
from reconcile.tallyfy.activity import (
    Move,
    UnusableAnswer,
    read_moves,
    unread_because,
)
from reconcile.tallyfy.client import PAGE_SIZE
from reconcile.tallyfy.observe import Observation, Progress, Seen, read_state
from reconcile.unmanaged import add_unmanaged
from reconcile.writer import destination

Connect = Callable[[Settings], TallyfyClient]
"""Makes the one API client of a command from its settings."""
Hook = Callable[[Plan], None]


def connect(settings: Settings) -> TallyfyClient:
    """The API client the settings describe, over the network."""
    return TallyfyClient(
        settings.target,
        settings.token,
        parallelism=settings.pace.parallelism,
        rate_limit=settings.pace.rate_limit,
        rate_limits=settings.pace.windows,
        timeout=settings.timeout,
    )


def validate(state_path: Path | str) -> StateFile:
    """The state file, validated offline; StateFileError lists every problem."""
    return load_state(state_path)


def plan(
    state_path: Path | str,
    flags: Flags | None = None,
    *,
    baseline: Path | None = None,
    baseline_ref: str | None = None,
    show_unmanaged: bool = False,
    environ: Mapping[str, str] | None = None,
    connect: Connect = connect,
    on_read: Progress | None = None,
    attribution: bool = True,
    changed_since: datetime | None = None,
) -> Plan:
    """The plan for a state file: read-only, sends only GET requests. `baseline` (a file) or
    `baseline_ref` (a git revision of the same file) labels each change requested or drift;
    `show_unmanaged` lists the organization's undeclared runs. `on_read` hears the read's
    progress as (requests answered, requests expected).

    Drift (every change, without a baseline) is attributed from the activity feed unless
    `attribution` is False, and the state file's `[drift] auto_archived` policy is applied.
    `changed_since` reads only the declared runs the feed shows moved since then (a drift
    check), or every run when the feed cannot answer completely."""
    environ = os.environ if environ is None else environ
    path = Path(state_path)

    async def run() -> Plan:
        state = load_state(path)
        settings = resolve(flags, environ=environ, tallyfy=state.tallyfy, safety=state.safety)
        async with connect(settings) as client:
            before = read_baseline(path, path=baseline, ref=baseline_ref, environ=environ)
            # With a baseline, only drift is attributed: a changed run may be requested.
            reads = Reads(client, state, feed=attribution and before is None)
            try:
                moves, feed = None, attribution
                if changed_since is None:
                    planned = await _read_and_plan(client, state, settings, on_read, reads.seen)
                else:
                    planned, moves, readable = await _changed(
                        client, state, settings, changed_since, on_read
                    )
                    feed = feed and readable
                if show_unmanaged:
                    planned = await add_unmanaged(client, planned)
                if before is not None:
                    edits = compare_declarations(declared(before), declared(state))
                    planned = replace(label_changes(planned, before), declarations=edits)
                return await _attributed(planned, state, reads, feed=feed, moves=moves)
            finally:
                await reads.aclose()

    return asyncio.run(run())


@dataclass(frozen=True)
class Applied:
    """What an apply did: the plan it carried out (what was left of it, for a saved plan) and
    the report of its writes, None when the plan had no changes."""

    plan: Plan
    report: ApplyReport | None


def apply(
    state_path: Path | str,
    flags: Flags | None = None,
    *,
    saved_plan: Path | None = None,
    expected_checksum: str | None = None,
    force: bool = False,
    max_changes: int | None = None,
    on_plan: Hook | None = None,
    before_writes: Hook | None = None,
    on_result: Callable[[Result], None] | None = None,
    stop: Interruption | None = None,
    environ: Mapping[str, str] | None = None,
    connect: Connect = connect,
    on_read: Progress | None = None,
) -> Applied:
    """Plan (or take what is left of `saved_plan`, which then replaces the state file), check the
    plan (reconcile.safety.check_before_writes), then archive and activate exactly the planned runs.

    `on_plan` hears the plan before it is checked, `before_writes` after every check passed (also
    for a plan without changes; raise to stop without writing), `on_result` each change as it
    finishes. A set `stop` lets no new write start; while the writes run, SIGINT and SIGTERM set
    it (see Interruption)."""
    environ = os.environ if environ is None else environ
    if expected_checksum is not None:
        expected_checksum = parse_checksum(expected_checksum)

    async def run() -> Applied:
        if saved_plan is None:
            state = load_state(state_path)
            settings = resolve(flags, environ=environ, tallyfy=state.tallyfy, safety=state.safety)
        else:
            saved = load_plan(saved_plan)
            if expected_checksum is not None:
                check_saved_checksum(saved, str(saved_plan), expected_checksum)
            # The organization may come from the plan; the API URL never does, so that a plan
            # file cannot send the token to another server.
            file = TallyfySettings(org_id=saved.org_id)
            settings = resolve(
                flags, environ=environ, tallyfy=file, safety=saved.limits, bound=False
            )
            check_target(saved, str(saved_plan), **_target(settings))
        async with connect(settings) as client:
            if saved_plan is None:
                reads = Reads(client, state, feed=True)
                try:
                    planned = await _read_and_plan(client, state, settings, on_read, reads.seen)
                    planned = await _attributed(planned, state, reads)
                finally:
                    await reads.aclose()
            else:
                planned = await _what_is_left(client, saved, str(saved_plan), settings, on_read)
            if on_plan is not None:
                on_plan(planned)
            # A saved plan's checksum was checked as it was read: what is left of it may be less.
            live_checksum = expected_checksum if saved_plan is None else None
            check_before_writes(
                planned, expected_checksum=live_checksum, force=force, max_changes=max_changes
            )
            if before_writes is not None:
                before_writes(planned)
            if not planned.changes:
                return Applied(planned, None)
            return Applied(planned, await _write(client, planned, on_result, stop))

    return asyncio.run(run())


def import_runs(
    output: Path,
    selection: Selection,
    mode: Mode = Mode.NEW,
    flags: Flags | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    connect: Connect = connect,
) -> Imported:
    """Write the selected runs of the organization as a state file at `output` (or, with
    Mode.MERGE, append the runs it does not declare). Read-only towards Tallyfy. The output is
    checked before the first request."""
    environ = os.environ if environ is None else environ
    existing = existing_file(output, mode)
    written = destination(output)
    file = existing.tallyfy if existing is not None else None
    settings = resolve(flags, environ=environ, tallyfy=file, bound=False)

    async def read() -> list[ObservedRun]:
        async with connect(settings) as client:
            return list(await select_runs(client, selection))

    runs = asyncio.run(read())
    imported = build_import(
        output, runs, org_id=settings.target.org_id, selection=selection, existing=existing
    )
    if imported.written:
        written.write_text(imported.text)
    return imported


def refresh(
    state_path: Path | str,
    flags: Flags | None = None,
    *,
    prune: bool = False,
    names: bool = False,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
    connect: Connect = connect,
    on_read: Progress | None = None,
) -> Refreshed:
    """Rewrite the state file in place so that each declaration says what Tallyfy says now: the
    run's live state (with `names`, its live name for an outdated label; with `prune`, no
    declaration for a run the organization no longer has). Read-only towards Tallyfy. The file's
    form and the destination are checked before the first request; with `dry_run` nothing is
    written."""
    environ = os.environ if environ is None else environ
    path = Path(state_path)
    state = load_state(path)
    text = _text_of(path, state, "while it was read")
    check_editable(text, str(path), names=names)
    written = None if dry_run else destination(path)
    settings = resolve(flags, environ=environ, tallyfy=state.tallyfy, safety=state.safety)

    async def read() -> Observation:
        async with connect(settings) as client:
            return await read_state(client, state.runs, settings.fetch, on_read)

    seen = asyncio.run(read())
    if not prune:
        # As plan does: a gone run declared archived is left alone, one declared active stops it.
        check_gone(seen.gone, settings.limits, settings.target.org_id)
    refreshed = refresh_text(text, state, seen.runs, prune=prune, names=names)
    if written is None or not refreshed.changed:
        return refreshed
    _text_of(path, state, "while refresh read Tallyfy")
    written.write_text(refreshed.after)
    return replace(refreshed, written=True)


def _text_of(path: Path, state: StateFile, when: str) -> str:
    """The text of the file `state` was read from; ConfigError if the file is not that now."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    if hashlib.sha256(raw).hexdigest() != state.sha256:
        raise ConfigError(f"{path} changed {when}; it was not written. Run refresh again.")
    return raw.decode("utf-8")


def _target(settings: Settings) -> dict[str, str]:
    return {"org_id": settings.target.org_id, "api_url": settings.target.api_url}


async def _read_and_plan(
    client: TallyfyClient,
    state: StateFile,
    settings: Settings,
    on_read: Progress | None,
    on_runs: Seen | None = None,
) -> Plan:
    # What is alive now (the state file, settings, modules) outlives the read: the cycle
    # collector need not re-scan it while the answers of a large read arrive.
    gc.freeze()
    try:
        seen = await read_state(client, state.runs, settings.fetch, on_read, on_runs)
    finally:
        gc.unfreeze()
    check_gone(seen.gone, settings.limits, client.target.org_id)
    planned = build_plan(
        state, seen.runs, limits=settings.limits, gone=seen.gone, **_target(settings)
    )
    return replace(planned, gates=tripped(planned))


async def _attributed(
    planned: Plan,
    state: StateFile,
    reads: Reads,
    *,
    feed: bool = True,
    moves: tuple[Move, ...] | None = None,
) -> Plan:
    """The plan with its drift attributed and the `[drift] auto_archived` policy applied. Reads
    only what the plan needs (reconcile.sources, which may have started already): the feed when
    there is drift to attribute, the auto-archive setting when a run declared active is
    complete; nothing for a plan without either."""
    wanted, setting = bool(attributed_changes(planned)), needs_setting(planned)
    if not (wanted or setting):
        return planned
    sources = await reads.sources(feed=feed and wanted, setting=setting, moves=moves)
    now = datetime.now(UTC)
    attached = attach(planned, sources, policy=state.drift.auto_archived, now=now)
    return replace(attached, gates=tripped(attached))


async def _changed(
    client: TallyfyClient,
    state: StateFile,
    settings: Settings,
    since: datetime,
    on_read: Progress | None,
) -> tuple[Plan, tuple[Move, ...] | None, bool]:
    """The plan of the declared runs the feed shows moved since `since`, with those moves; or,
    when the feed cannot answer completely, the plan of every declared run, saying so. The flag
    says whether the feed is worth reading for attribution: not after it refused or failed."""
    shown = timestamp(since)
    try:
        moves = await read_moves(client, since, max_pages=state.drift.feed_pages)
    except (ApiError, UnusableAnswer) as exc:
        why = unread_because(exc)
        planned = await _read_and_plan(client, state, settings, on_read)
        notice = (
            f"--changed-since {shown}: the activity feed could not answer completely ({why}); "
            "every declared run was read instead"
        )
        # Too many pages since `since` says nothing of the feed's own window: only an error does.
        return (
            replace(planned, notices=(*planned.notices, notice)),
            None,
            isinstance(exc, UnusableAnswer),
        )
    moved = {move.run_id for move in moves}
    subset = replace(state, runs=tuple(run for run in state.runs if run.run_id in moved))
    # Listing would take at least one page per PAGE_SIZE declared runs: fewer GETs are cheaper.
    if settings.fetch == "auto" and len(subset.runs) <= -(-len(state.runs) // PAGE_SIZE):
        settings = replace(settings, fetch="get")
    planned = await _read_and_plan(client, subset, settings, on_read)
    unread = tuple(run for run in state.runs if run.run_id not in moved)
    planned = replace(planned, unread=unread)
    planned = replace(planned, gates=tripped(planned))
    notice = (
        f"drift check: the activity feed shows {len(subset.runs)} of the {len(state.runs)} "
        f"declared runs moved since {shown}, and only those were read; runs the feed does not "
        "record moving are not checked, so a full plan (without --changed-since) stays the truth"
    )
    return replace(planned, notices=(*planned.notices, notice)), moves, True


async def _what_is_left(
    client: TallyfyClient, saved: Plan, path: str, settings: Settings, on_read: Progress | None
) -> Plan:
    now = await observe(client, [run.desired for run in saved.runs], settings.fetch, on_read)
    left = remaining(replace(saved, limits=settings.limits), path, now)
    return replace(left, gates=tripped(left))


async def _write(
    client: TallyfyClient,
    planned: Plan,
    on_result: Callable[[Result], None] | None,
    stop: Interruption | None,
) -> ApplyReport:
    if stop is None:
        return await apply_plan(client, planned, on_result=on_result)
    with stop.on_signals():
        return await apply_plan(client, planned, on_result=on_result, stop=stop)
