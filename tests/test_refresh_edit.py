"""The state file editor (reconcile.refresh): random files in every form people write, edited, must
parse to exactly the expected declarations and differ from the original only where they must."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import tomli
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.domain import RunState
from reconcile.errors import StateFileError
from reconcile.refresh import StateEdits, check_editable, edit_state
from reconcile.state import load_state

RUN_IDS = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
STATES = st.sampled_from(list(RunState))
NAMES = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
COMMENTS = st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=10).map(
    lambda text: "#" + text
)
SPACE = st.sampled_from(["", " ", "  ", "\t"])


@dataclass(frozen=True)
class Line:
    """One generated line; `fields` are the values of `run` it holds, between prefix and suffix."""

    text: str
    run: str | None = None
    fields: frozenset[str] = frozenset()
    prefix: str = ""
    suffix: str = ""


@dataclass(frozen=True)
class Declaration:
    run_id: str
    state: RunState
    name: str | None
    form: str


def quoted(value: str, literal: bool) -> str:
    """`value` as TOML writes it: a literal string when asked and possible, else tomli-w's."""
    if literal and "'" not in value and all(c == "\t" or c.isprintable() for c in value):
        return f"'{value}'"
    return tomli_w.dumps({"k": value})[len("k = ") : -1]


@st.composite
def declarations(draw: st.DrawFn) -> list[Declaration]:
    run_ids = draw(st.lists(RUN_IDS, unique=True, max_size=8))
    forms = ["short", "inline", "dotted", "table"]
    return [
        Declaration(
            run_id,
            draw(STATES),
            draw(st.none() | NAMES),
            draw(st.sampled_from(forms)),
        )
        for run_id in run_ids
    ]


@st.composite
def comment_lines(draw: st.DrawFn, run: str | None = None) -> list[Line]:
    return [Line(draw(SPACE) + comment, run) for comment in draw(st.lists(COMMENTS, max_size=2))]


@st.composite
def keyval(draw: st.DrawFn, key: str, run: str, field: str, value: str) -> Line:
    prefix = f"{draw(SPACE)}{key}{draw(SPACE)}={draw(SPACE)}"
    suffix = draw(st.sampled_from(["", " # kept", "  #"]))
    text = prefix + quoted(value, draw(st.booleans())) + suffix
    return Line(text, run, frozenset({field}), prefix, suffix)


@st.composite
def short_lines(draw: st.DrawFn, run: Declaration) -> list[Line]:
    """A run declared in the [runs] table: `ID = "state"`, an inline table, or dotted keys."""
    rid = run.run_id
    if run.form == "short" and run.name is None:
        return [draw(keyval(rid, rid, "state", run.state.value))]
    if run.form == "inline":
        parts = [("state", run.state.value)]
        if run.name is not None:
            parts.append(("name", run.name))
        parts = draw(st.permutations(parts))
        prefix = f"{rid} = {{ {parts[0][0]} = "
        body = ", ".join(f"{k} = {quoted(v, draw(st.booleans()))}" for k, v in parts)
        suffix = draw(st.sampled_from([" }", ", }"]))
        fields = frozenset(k for k, _ in parts)
        return [Line(f"{rid} = {{ {body}{suffix}", rid, fields, prefix, suffix)]
    lines = [draw(keyval(f"{rid}.state", rid, "state", run.state.value))]
    if run.name is not None:
        lines.append(draw(keyval(f'{rid}. "name"', rid, "name", run.name)))
    return draw(st.permutations(lines))


@st.composite
def table_lines(draw: st.DrawFn, run: Declaration) -> list[Line]:
    """A `[runs.ID]` table: comments above it stay; comments inside it belong to the run."""
    rid = run.run_id
    key = draw(st.sampled_from([rid, f'"{rid}"', f"'{rid}'"]))
    header = f"[{draw(SPACE)}runs.{key}{draw(SPACE)}]" + draw(st.sampled_from(["", "  # long"]))
    body = [draw(keyval("state", rid, "state", run.state.value))]
    if run.name is not None:
        body.append(draw(keyval('"name"', rid, "name", run.name)))
    inside: list[Line] = []
    for index, line in enumerate(draw(st.permutations(body))):
        if index and draw(st.booleans()):
            inside.append(Line("", rid))
        inside += [*draw(comment_lines(rid)), line]
    trailing = draw(comment_lines(rid))
    ends_with_blank = bool(trailing) or draw(st.booleans())
    blank = [Line("")] if ends_with_blank else []
    return [*draw(comment_lines()), Line(header, rid), *inside, *trailing, *blank]


@st.composite
def state_files(draw: st.DrawFn) -> tuple[list[Line], list[Declaration]]:
    runs = draw(declarations())
    lines = draw(comment_lines())
    if draw(st.booleans()):
        lines += [Line("[tallyfy]"), Line('org_id = "5e7c0f3a9d2b4c6e8a1f0b3d5c7e9a2b"'), Line("")]
    lines.append(Line("[runs]" + draw(st.sampled_from(["", " # short form"]))))
    for run in runs:
        if run.form != "table":
            lines += draw(comment_lines()) + draw(short_lines(run))
            if draw(st.booleans()):
                lines.append(Line(""))
    lines.append(Line(""))
    for run in runs:
        if run.form == "table":
            lines += draw(table_lines(run))
    return lines, runs


@st.composite
def edits_for(draw: st.DrawFn, runs: list[Declaration]) -> StateEdits:
    states: dict[str, RunState] = {}
    names: dict[str, str] = {}
    prune: set[str] = set()
    for run in runs:
        choice = draw(st.sampled_from(["keep", "flip", "prune"]))
        if choice == "flip":
            states[run.run_id] = next(s for s in RunState if s is not run.state)
        elif choice == "prune":
            prune.add(run.run_id)
        if choice != "prune" and run.name is not None and draw(st.booleans()):
            names[run.run_id] = draw(NAMES.filter(run.name.__ne__))
    return StateEdits(states=states, names=names, prune=frozenset(prune))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), newline=st.sampled_from(["\n", "\r\n"]), end=st.booleans())
def test_edits_change_only_their_values_and_lines(
    data: st.DataObject, newline: str, end: bool
) -> None:
    lines, runs = data.draw(state_files())
    edits = data.draw(edits_for(runs))
    text = newline.join(line.text for line in lines) + (newline if end else "")
    edited = edit_state(text, "state.toml", edits)

    expected = {
        run.run_id: (edits.states.get(run.run_id, run.state), edits.names.get(run.run_id, run.name))
        for run in runs
        if run.run_id not in edits.prune
    }
    reread = load_state("state.toml", raw=edited.encode())
    assert {run.run_id: (run.state, run.name) for run in reread.runs} == expected
    before, after = tomli.loads(text), tomli.loads(edited)
    assert after.get("tallyfy") == before.get("tallyfy")

    kept = [line for line in lines if line.run not in edits.prune]
    new_lines = edited.split(newline)
    for line, new in zip(kept, new_lines, strict=False):
        if line.run is not None and line.fields & changed_fields(edits, line.run):
            assert new != line.text
            assert new.startswith(line.prefix)
            assert new.endswith(line.suffix)
        else:
            assert new == line.text
    ends_with_newline = end or lines[-1].run in edits.prune
    assert new_lines[len(kept) :] == ([""] if ends_with_newline else [])


def changed_fields(edits: StateEdits, run_id: str) -> set[str]:
    return {
        field
        for field, values in (("state", edits.states), ("name", edits.names))
        if run_id in values
    }


A = "3f2a9c0d5e6b47a8b9c0d1e2f3a4b5c6"
B = "9b1e2d3c4b5a69788796a5b4c3d2e1f0"
C = "1c4e7a9b2d5f48e6a3c1b7d9e2f4a6c8"


def test_prune_removes_a_table_with_its_comments_and_keeps_the_comments_above_it() -> None:
    text = (
        "[runs]\n"
        f"{A} = 'archived'  # gone soon\n"
        f'{C} = "active"\n'
        "\n"
        "# About B: stays\n"
        f"[runs.{B}]  # B\n"
        "# inside B\n"
        'state = "active"\n'
        "\n"
        'name = "B"\n'
        "# B's last word, inside B\n"
        "\n"
        "# The end: stays\n"
    )
    edited = edit_state(text, "s.toml", StateEdits(prune={A, B}))
    assert edited == f'[runs]\n{C} = "active"\n\n# About B: stays\n\n# The end: stays\n'


def test_comments_between_two_tables_without_blank_lines_belong_to_the_next() -> None:
    text = f'[runs.{A}]\nstate = "active"\n# about C\n[runs.{C}]\nstate = "archived"\n'
    edited = edit_state(text, "s.toml", StateEdits(prune={A}))
    assert edited == f'# about C\n[runs.{C}]\nstate = "archived"\n'


@pytest.mark.parametrize(
    ("old", "new", "written"),
    [
        ("'Old'", "New", "'New'"),
        ("'Old'", "Bob's run", '"Bob\'s run"'),
        ('"Old"', 'say "hi" \\ \x07\x7f\n', '"say \\"hi\\" \\\\ \\u0007\\u007f\\n"'),
        ("'Old'", "tab\there", "'tab\there'"),
        ('"Old"', '"""', '"\\"\\"\\""'),
    ],
)
def test_names_keep_their_quoting_when_they_can_and_are_escaped(
    old: str, new: str, written: str
) -> None:
    text = f'[runs.{A}]\nstate = "active"\nname = {old}  # label\n'
    edited = edit_state(text, "s.toml", StateEdits(names={A: new}))
    assert edited == f'[runs.{A}]\nstate = "active"\nname = {written}  # label\n'
    assert tomli.loads(edited)["runs"][A]["name"] == new


def test_keys_written_every_way_toml_allows_are_found() -> None:
    escaped = "\\u0033" + A[1:]  # the same key, with its first character escaped
    text = (
        "\ufeff# a file with a byte-order mark\r\n"
        f'runs."{escaped}" . state = "archived"\r\n'
        f"runs.{B} = {{ name = 'b', state = 'active' }}\r\n"
    )
    edited = edit_state(
        text, "s.toml", StateEdits(states={A: RunState.ACTIVE, B: RunState.ARCHIVED})
    )
    assert edited == text.replace('"archived"', '"active"').replace("'active'", "'archived'")
    assert edit_state(text, "s.toml", StateEdits(prune={A})) == text.replace(
        f'runs."{escaped}" . state = "archived"\r\n', ""
    )


def test_strings_and_arrays_elsewhere_that_look_like_tables_are_not_read_as_tables() -> None:
    text = (
        "[tallyfy]\n"
        'api_url = """\n'
        f"[runs.{A}]\n"
        'state = "archived" \\"""\n'
        '"""\n'
        "[runs]\n"
        f'{A} = "active" # [runs.{B}]\n'
        f"[runs.{B}]\n"
        "state = 'active'\n"
    )
    edited = edit_state(text, "s.toml", StateEdits(states={A: RunState.ARCHIVED}, prune={B}))
    assert edited == text.replace(f'{A} = "active"', f'{A} = "archived"').replace(
        f"[runs.{B}]\nstate = 'active'\n", ""
    )


def test_an_inline_runs_table_is_refused_with_its_line() -> None:
    text = f'# state\nruns = {{ {A} = "active" }}\n'
    with pytest.raises(StateFileError) as refused:
        check_editable(text, "s.toml")
    assert [(p.path, p.line, p.key) for p in refused.value.problems] == [("s.toml", 2, "runs")]
    assert "inline table" in str(refused.value)
    with pytest.raises(StateFileError):
        edit_state(text, "s.toml", StateEdits(states={A: RunState.ARCHIVED}))


def test_values_in_other_forms_are_refused_with_their_lines_when_they_would_be_rewritten() -> None:
    text = (
        f'[runs]\n{A} = """archived"""\n{C} = "active"\n'
        f'[runs.{B}]\nstate = "active"\nname = """\nB"""\n'
    )
    with pytest.raises(StateFileError) as refused:
        check_editable(text, "s.toml", names=True)
    assert [(p.line, p.key) for p in refused.value.problems] == [(2, f"runs.{A}"), (6, f"runs.{B}")]
    assert "multi-line string" in refused.value.problems[0].message
    check_editable(text.replace('"""archived"""', '"archived"'), "s.toml")
    with pytest.raises(StateFileError) as refused:
        edit_state(text, "s.toml", StateEdits(states={A: RunState.ACTIVE, C: RunState.ARCHIVED}))
    assert [p.line for p in refused.value.problems] == [2]
    assert edit_state(text, "s.toml", StateEdits(prune={A})) == text.replace(
        f'{A} = """archived"""\n', ""
    )


def test_a_name_edit_needs_a_label_and_a_run_must_be_declared() -> None:
    text = f'[runs]\n{A} = "active"\n'
    with pytest.raises(StateFileError) as refused:
        edit_state(text, "s.toml", StateEdits(names={A: "x"}, states={C: RunState.ACTIVE}))
    assert [(p.line, p.message) for p in refused.value.problems] == [
        (None, f"run {C} is not declared in the file"),
        (2, f"run {A} has no name to update"),
    ]
