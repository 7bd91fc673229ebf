"""The proof: for random starting states, declarations, API behaviours and fault schedules,
applying until it succeeds reaches exactly the declared state, with one effective write per
change, extra writes only where a fault forced them, and nothing undeclared touched.

Each round is `reconcile apply --auto-approve --force` (read, plan, check, apply): the library's
own apply, against the in-process sandbox with a short timeout and short backoffs so that
hundreds of faulty runs take seconds. A round "exits 0" when it raises nothing and no change
failed, as the CLI decides it. (--force: the random declarations often trip a safety gate, which
is not what this proves.)
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile import pipeline
from reconcile.config import TOKEN_ENV, Fetch, Flags
from reconcile.errors import ReconcileError
from reconcile.sandbox import Behaviour, Fault, Sandbox
from reconcile.tallyfy import RetryPolicy
from tests.demo import ORG, TOKEN
from tests.guards import FIGURES
from tests.helpers import numbered_runs, sandbox_connect, sandbox_states, write_state

FAST = RetryPolicy(backoff_base=0.001, backoff_cap=0.002)
TIMEOUT = 0.02
LONGER = 1.0  # a delay the client never waits out: the in-process transport times out instead
WRITE_METHODS = ("DELETE", "PUT")
# Faults whose request is carried out although the client sees a failure or a bad answer.
CARRIED_OUT = frozenset({"truncated", "missing_archived_at", "wrong_id", "wrong_count", "slow"})

_method = st.sampled_from(["GET", "DELETE", "PUT"])
_times = st.integers(1, 3)
FAULTS = st.one_of(
    st.builds(
        lambda method, times: Fault(
            "status", method=method, status=429, retry_after=0, times=times
        ),
        _method,
        st.integers(1, 6),
    ),
    st.builds(
        lambda method, status, effect, times: Fault(
            "status", method=method, status=status, after_effect=effect, times=times
        ),
        _method,
        st.sampled_from([500, 502, 503, 504]),
        st.booleans(),
        _times,
    ),
    st.builds(
        lambda kind, method, effect, times: Fault(
            kind, method=method, after_effect=effect, times=times, delay=LONGER
        ),
        st.sampled_from(["drop", "timeout"]),
        _method,
        st.booleans(),
        _times,
    ),
    st.builds(
        lambda method, status, effect: Fault(
            "html", method=method, status=status, after_effect=effect
        ),
        _method,
        st.sampled_from([200, 502]),
        st.booleans(),
    ),
    st.builds(
        lambda kind, method: Fault(kind, method=method, delay=LONGER),
        st.sampled_from(sorted(CARRIED_OUT)),
        _method,
    ),
)
BEHAVIOURS = st.builds(
    Behaviour,
    archived_get=st.sampled_from([200, 404]),
    noop_write=st.sampled_from(["200", "404", "422"]),
    archive_sets_status=st.booleans(),
)


def converge(sandbox: Sandbox, path: Path, fetch: Fetch, rounds: int) -> int:
    """Apply until a round succeeds; the number of rounds it took (at most `rounds`)."""

    flags = Flags(
        api_url="https://sandbox.test/api", org_id=ORG, fetch=fetch, rate_limit=0, timeout=TIMEOUT
    )

    def one_round() -> bool:
        try:
            applied = pipeline.apply(
                path,
                flags,
                force=True,
                environ={TOKEN_ENV: TOKEN},
                connect=sandbox_connect(sandbox, retry=FAST),
            )
        except ReconcileError:
            return False
        return applied.report is None or not applied.report.failed

    for attempt in range(1, rounds + 1):
        if one_round():
            return attempt
    raise AssertionError(f"apply did not succeed in {rounds} rounds")


def forced_writes(faults: Sequence[Fault]) -> int:
    """Uses of faults that stop a write from being carried out: each needs one more write."""
    return sum(
        fault.times
        for fault in faults
        if fault.method in WRITE_METHODS
        and fault.kind not in CARRIED_OUT
        and not fault.after_effect
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    initial=st.lists(st.booleans(), min_size=1, max_size=10),
    desired=st.lists(st.sampled_from(["archived", "active", None]), min_size=10, max_size=10),
    schedule=st.lists(FAULTS, max_size=8, unique=True),
    behaviour=BEHAVIOURS,
    fetch=st.sampled_from(["get", "list", "auto"]),
)
def test_apply_under_faults_converges_with_no_write_lost_or_duplicated(
    initial: list[bool],
    desired: list[str | None],
    schedule: list[Fault],
    behaviour: Behaviour,
    fetch: Fetch,
) -> None:
    runs = numbered_runs(initial)
    sandbox = Sandbox(ORG, TOKEN, runs, behaviour)
    all_ids = tuple(run.id for run in runs)
    before = sandbox_states(sandbox, all_ids)
    declared = {run.id: want for run, want in zip(runs, desired, strict=False) if want}
    changes = {run_id for run_id, want in declared.items() if before[run_id] != want}
    for fault in schedule:
        sandbox.inject(fault)
    uses = sum(fault.times for fault in schedule)

    with tempfile.TemporaryDirectory() as tmp:
        path = write_state(Path(tmp) / "state.toml", declared)
        rounds = converge(sandbox, path, fetch, rounds=uses + 1)

    after = sandbox_states(sandbox, all_ids)
    assert {run_id: after[run_id] for run_id in declared} == declared, "a write was lost"
    assert {r: s for r, s in after.items() if r not in declared} == {
        r: s for r, s in before.items() if r not in declared
    }, "an undeclared run changed"
    writes = sandbox.writes
    assert {w.run_id for w in writes} <= changes, "a write went to a run that was already right"
    assert not [w for w in writes if w.status in (404, 422)], "a write was sent for a no-op"
    forced = forced_writes(schedule) - forced_writes(sandbox.pending_faults)
    assert len(writes) == len(changes) + forced, "a write was duplicated"

    FIGURES["reliability examples"] += 1
    FIGURES["reliability rounds"] += rounds
    FIGURES["faults injected"] += uses - sum(f.times for f in sandbox.pending_faults)
    FIGURES["write requests"] += len(writes)
    FIGURES["writes forced by faults"] += forced
