"""Bad input of every kind: all problems reported at once, exit 1, and not one request sent.
Ends with a fuzz test of the state-file parser."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.errors import StateFileError
from reconcile.sandbox import Sandbox
from reconcile.state import MAX_FILE_BYTES, load_state
from tests.demo import DEMO_IDS, ORG, ROOT, TOKEN
from tests.guards import FIGURES
from tests.helpers import run

A, B = DEMO_IDS[0], DEMO_IDS[1]
EXAMPLE = ROOT / "state.example.toml"
HEADER = "Error: {n} in the state file; nothing was sent to Tallyfy:\n"


def refused(sandbox: Sandbox, *args: str) -> str:
    """Run plan and apply with `args`; both must exit 1 without a request. Returns stderr."""
    outputs = set()
    FIGURES["bad inputs tried"] += 1
    for command in ("plan", "apply"):
        result = run(command, *args, *(["--auto-approve"] if command == "apply" else []))
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        outputs.add(result.stderr.replace(f"reconcile {command}", "reconcile COMMAND"))
    assert sandbox.requests == []
    (stderr,) = outputs
    return stderr


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "state.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_syntax_error_names_line_and_column(sandbox: Sandbox, cli_env: str, tmp_path: Path) -> None:
    path = write(tmp_path, f'[runs]\n{A} = "archived"\n{B} = "active\n')
    assert refused(sandbox, str(path)) == (
        HEADER.format(n="1 problem")
        + f"  {path}:3: invalid TOML at column 43: Illegal character '\\n'\n"
    )


def test_every_problem_at_once(sandbox: Sandbox, cli_env: str, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[tallyfy]\n"
        'org_id = "5E7C0F3A9D2B4C6E8A1F0B3D5C7E9A2B"\n'
        "api_ur = 'https://go.tallyfy.com/api'\n"
        "[runs]\n"
        f'{A} = "archive"\n'
        f"{B} = 1\n"
        '"../../me" = "active"\n'
        f"[runs.{DEMO_IDS[2]}]\n"
        'sate = "active"\n'
        "[run]\n",
    )
    p = str(path)
    expected = [
        f"{p}:2: [tallyfy.org_id] '5E7C0F3A9D2B4C6E8A1F0B3D5C7E9A2B' is not an organization "
        "ID (32 lowercase hex characters)",
        f"{p}:3: [api_ur] unknown key; did you mean 'api_url'?",
        f'{p}:5: [runs.{A}] \'archive\' is not a state; use "archived" or "active"',
        f'{p}:6: [runs.{B}] must be "archived", "active", or a table with state = "..." '
        'and name = "..."',
        f"{p}:7: [runs.../../me] '../../me' is not a run ID (32 lowercase hex characters, as "
        "in the run's URL)",
        f'{p}:8: [runs.{DEMO_IDS[2]}.state] missing; set state = "archived" or state = "active"',
        f"{p}:9: [runs.{DEMO_IDS[2]}.sate] unknown key; did you mean 'state'?",
        f"{p}:10: [run] unknown key; did you mean 'runs'?",
    ]
    assert refused(sandbox, p) == HEADER.format(n="8 problems") + "".join(
        f"  {line}\n" for line in expected
    )


@pytest.mark.parametrize(
    "run_id",
    [
        "../" + A[3:],
        f"..%2f{A[5:]}",
        f"%2e%2e{A[6:]}",
        f"{A[:16]} {A[17:]}",
        f"{A[:31]}/",
        f"{A}/delete",
        f"{A}?x=1",
        f"{A}#",
        A[:31],
        A + "0",
        A.upper(),
        "\u0660" * 32,  # Arabic-Indic zeros: digits to Unicode, not to the API
        f"{A[:31]}\\n",
        "",
    ],
)
def test_bad_run_ids_never_reach_a_url(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, run_id: str
) -> None:
    path = write(tmp_path, f'[runs]\n{A} = "archived"\n"{run_id}" = "archived"\n')
    stderr = refused(sandbox, str(path))
    assert stderr.startswith(HEADER.format(n="1 problem") + f"  {path}:3: [runs.")
    assert "is not a run ID" in stderr or "must be lowercase" in stderr


@pytest.mark.parametrize(
    "org", ["../" + "a" * 29, "%2e%2e" + "a" * 26, "A" * 32, "a" * 31, "a" * 16 + " " + "a" * 15]
)
@pytest.mark.parametrize("where", ["flag", "env", "file"])
def test_bad_org_ids_are_refused(
    sandbox: Sandbox,
    cli_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    org: str,
    where: str,
) -> None:
    runs = f'[runs]\n{A} = "archived"\n'
    args: list[str] = []
    if where == "file":
        monkeypatch.delenv("TALLYFY_ORG_ID")
        path = write(tmp_path, f'[tallyfy]\norg_id = "{org}"\n' + runs)
        expected = f"  {path}:2: [tallyfy.org_id] {org!r} is not an organization ID"
    else:
        path = write(tmp_path, runs)
        if where == "flag":
            args = ["--org", org]
        else:
            monkeypatch.setenv("TALLYFY_ORG_ID", org)
        expected = f"Error: Organization ID {org!r} is not 32 lowercase hex characters"
    assert expected in refused(sandbox, str(path), *args)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty; declare runs under a [runs] table"),
        (b"\n \t\n", "the file is empty; declare runs under a [runs] table"),
        (b"\xff\xfe[\x00r\x00", "1: not UTF-8 text (byte 0xff at offset 0)"),
        (b"[runs]\n# \xe9t\xe9\n", "2: not UTF-8 text (byte 0xe9 at offset 9)"),
        (b"[runs]\nx = " + b"[" * 100_000, "invalid TOML: arrays or inline tables nested too"),
        (b"[runs]\n\x00 = 1\n", "2: invalid TOML at column 1: Invalid statement"),
    ],
    ids=["empty", "blank", "utf16", "latin1", "deep", "nul"],
)
def test_unreadable_files(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "state.toml"
    path.write_bytes(content)
    stderr = refused(sandbox, str(path))
    assert stderr.startswith(HEADER.format(n="1 problem") + f"  {path}")
    assert message in stderr


def test_a_huge_file_is_refused_without_reading_it(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path = tmp_path / "state.toml"
    with path.open("wb") as stream:  # sparse: no disk space is used
        stream.truncate(MAX_FILE_BYTES + 1)
    assert refused(sandbox, str(path)) == HEADER.format(n="1 problem") + (
        f"  {path}: the file is {MAX_FILE_BYTES + 1} bytes; the limit is {MAX_FILE_BYTES} bytes\n"
    )
    with path.open("r+b") as stream:
        stream.truncate(MAX_FILE_BYTES)
    at_limit = run("validate", str(path))
    assert "invalid TOML" in at_limit.stderr, "a file of exactly the limit is read"


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_file_is_refused() -> None:
    result = run("validate", "/dev/zero")
    assert result.exit_code == 1
    assert result.stderr.endswith(
        f"  /dev/zero: the file holds more than the limit of {MAX_FILE_BYTES} bytes\n"
    )


def test_a_directory_is_not_a_state_file(sandbox: Sandbox, cli_env: str, tmp_path: Path) -> None:
    stderr = run("validate", str(tmp_path)).stderr
    assert "Error: Invalid value for '[STATE_FILE]...'" in stderr
    assert "is a directory" in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fetch", "all"], "Invalid value for '--fetch': 'all' is not one of"),
        (["--parallelism", "0"], "Invalid value for '--parallelism': 0 is not in the range"),
        (["--timeout", "0"], "Invalid value for '--timeout': 0.0 is not in the range"),
        (["--timeout", "soon"], "Invalid value for '--timeout': 'soon' is not a valid float"),
        (["--org"], "Option '--org' requires an argument."),
        (["--token", TOKEN], "No such option '--token'. Did you mean '--token-file'?"),
        (["--auto-aprove"], "No such option '--auto-aprove'."),
        (["one.toml", "two.toml"], "Got unexpected extra argument (two.toml)"),
    ],
)
def test_bad_options_exit_1_not_2(
    sandbox: Sandbox, cli_env: str, args: list[str], message: str
) -> None:
    """Exit 2 means "changes present" to `plan --detailed-exitcode`; a typo must not say that."""
    FIGURES["bad inputs tried"] += 1
    result = run("plan", "--detailed-exitcode", *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert sandbox.requests == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--org", ORG, "--org", "b" * 32],
            f"--org is given more than once with different values ({ORG!r}, {'b' * 32!r})",
        ),
        (
            ["--fetch=get", "--fetch", "list"],
            "--fetch is given more than once with different values ('get', 'list')",
        ),
        (["--parallelism", "2", "--parallelism=3"], "--parallelism is given more than once"),
    ],
)
def test_contradicting_options_are_refused(
    sandbox: Sandbox, cli_env: str, args: list[str], message: str
) -> None:
    FIGURES["bad inputs tried"] += 1
    result = run("plan", "--detailed-exitcode", str(EXAMPLE), *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {message}")
    assert result.stderr.endswith("; give it once.\n")
    assert sandbox.requests == []


def test_the_same_option_value_twice_is_no_contradiction(sandbox: Sandbox, cli_env: str) -> None:
    result = run("plan", str(EXAMPLE), "--org", ORG, f"--org={ORG}", "--fetch", "get")
    assert result.exit_code == 0, result.output


def test_bad_options_before_the_command_exit_1() -> None:
    result = run("--verbose", "plan")
    assert result.exit_code == 1
    assert "No such option '--verbose'." in result.stderr
    assert run("unplan").exit_code == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty or unset"),
        (b"two words\n", "contains white space"),
        (b"zq\xc3\xb6x-secret", "characters other than printable ASCII"),
        (b"zq\x07x-secret", "characters other than printable ASCII"),
        (b"\xffzq9x-secret", "it is not UTF-8 text"),
        (b"x" * 70_000, "is larger than 65536 bytes"),
    ],
    ids=["empty", "space", "non-ascii", "control", "not-utf8", "huge"],
)
def test_bad_token_files(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, content: bytes, message: str
) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(content)
    state = write(tmp_path, f'[runs]\n{A} = "archived"\n')
    stderr = refused(sandbox, str(state), "--token-file", str(token_file))
    assert stderr.startswith("Error: ")
    assert message in stderr
    assert "secret" not in stderr


# --- fuzzing the state-file parser --------------------------------------------------------------

_KEYS = st.sampled_from(
    [A, B, A.upper(), "runs", "tallyfy", "org_id", "api_url", "state", "name", '"../x"', "a.b"]
)
_VALUES = st.sampled_from(
    ['"archived"', '"active"', "1", "true", "[]", "{}", '{state = "active"}', '"', "[[", "{"]
)
_LINES = st.one_of(
    st.builds(lambda k, v: f"{k} = {v}", _KEYS, _VALUES),
    st.builds(lambda k: f"[{k}]", st.sampled_from(["runs", "tallyfy", f"runs.{A}", "runs.x"])),
    st.builds(lambda k: f"[[{k}]]", _KEYS),
    st.text(max_size=40),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=st.one_of(
        st.lists(_LINES, max_size=12).map("\n".join).map(lambda text: text.encode()),
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    )
)
def test_the_parser_raises_only_its_own_error(
    tmp_path_factory: pytest.TempPathFactory, document: bytes
) -> None:
    FIGURES["state files fuzzed"] += 1
    path = tmp_path_factory.mktemp("fuzz") / "state.toml"
    path.write_bytes(document)
    try:
        state = load_state(path)
    except StateFileError as exc:
        problems = exc.problems
    else:
        problems = ()
        assert all(len(run.run_id) == 32 for run in state.runs)
    assert all(str(problem).startswith(str(path)) for problem in problems)
