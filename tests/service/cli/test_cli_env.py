"""`contactgraph --version`, and every flag settable as CONTACTGRAPH_<FLAG>
(flags win)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from service.cli.main import _check_environment, _parsers, build_parser, env_name
from tests.support.server import REPO


def parse(argv: list[str], **environ: str) -> argparse.Namespace:
    parser = build_parser(environ)
    args = parser.parse_args(argv)
    _check_environment(parser, args)
    return args


class TestVersion:
    def test_version_is_the_installed_distributions(self) -> None:
        """`python -m service.cli --version` prints `contactgraph X` with X
        from importlib.metadata, and exits 0."""
        out = subprocess.run([sys.executable, "-m", "service.cli", "--version"], cwd=REPO,
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"contactgraph {metadata.version('contactgraph')}"


class TestEnvironment:
    @pytest.mark.parametrize(("argv", "environ", "field", "expected"), [
        (["serve"], {"CONTACTGRAPH_PORT": "1234"}, "port", 1234),
        (["serve", "--port", "99"], {"CONTACTGRAPH_PORT": "1234"}, "port", 99),  # the flag wins
        (["serve"], {}, "port", 50051),
        (["serve"], {"CONTACTGRAPH_DATA_DIR": "/srv/cg"}, "data_dir", "/srv/cg"),
        (["serve"], {"CONTACTGRAPH_QUEUE_TIMEOUT": "0.5"}, "queue_timeout", 0.5),
        (["serve"], {"CONTACTGRAPH_NO_WAL": "true"}, "no_wal", True),
        (["serve"], {"CONTACTGRAPH_NO_WAL": "0"}, "no_wal", False),
        (["serve", "--no-wal"], {"CONTACTGRAPH_NO_WAL": "off"}, "no_wal", True),
        (["serve"], {"CONTACTGRAPH_CLIENT_ROLE": "operator=alice messaging-backend=bob,carol"}, "client_role",
         ["operator=alice", "messaging-backend=bob,carol"]),
        (["rebuild"], {"CONTACTGRAPH_EVENTS": "a.csv b.jsonl", "CONTACTGRAPH_OUT": "snap"}, "events",
         ["a.csv", "b.jsonl"]),
        (["probe", "load"], {"CONTACTGRAPH_SNAPSHOT": "snap"}, "snapshot", "snap"),
        (["probe", "load", "--users-file", "u.txt"], {"CONTACTGRAPH_SNAPSHOT": "snap"}, "snapshot", None),
        (["probe", "load"], {"CONTACTGRAPH_METHOD": "check", "CONTACTGRAPH_SNAPSHOT": "s"}, "method", "check"),
    ])
    def test_a_variable_sets_a_flag_and_a_flag_wins(self, argv: list[str], environ: dict[str, str], field: str,
                                                   expected: object) -> None:
        """Table: each CONTACTGRAPH_<FLAG> gives the flag's value, typed as
        the flag would be (int, float, booleans, lists split like a shell,
        repeatable flags), makes a required flag optional, and a flag on the
        command line (or the other side of an either-or pair) wins."""
        assert getattr(parse(argv, **environ), field) == expected

    @pytest.mark.parametrize(("argv", "environ", "variable"), [
        (["serve"], {"CONTACTGRAPH_PORT": "abc"}, "CONTACTGRAPH_PORT"),
        (["serve"], {"CONTACTGRAPH_NO_WAL": "maybe"}, "CONTACTGRAPH_NO_WAL"),
        (["probe", "load", "--snapshot", "s"], {"CONTACTGRAPH_METHOD": "delete"}, "CONTACTGRAPH_METHOD"),
    ])
    def test_a_bad_value_is_a_usage_error_naming_the_variable(
            self, argv: list[str], environ: dict[str, str], variable: str, capsys: pytest.CaptureFixture[str]) -> None:
        """A value that does not convert (or is not one of the choices) is a
        usage error (exit 2) naming the variable."""
        with pytest.raises(SystemExit) as caught:
            parse(argv, **environ)
        assert caught.value.code == 2
        assert variable in capsys.readouterr().err

    def test_a_bad_value_for_another_command_is_ignored(self) -> None:
        """A variable only a command not run reads does not stop this one."""
        assert parse(["snapshot", "info", "d"], CONTACTGRAPH_PORT="abc").dir == "d"

    def test_every_long_flag_names_its_variable(self) -> None:
        """Every long option of every subcommand has a variable, shown in
        its help (the mapping is generic: new flags get one too)."""
        parser = build_parser({})
        missing = [(p.prog, a.option_strings) for p in _parsers(parser) for a in p._actions
                   if any(o.startswith("--") for o in a.option_strings) and a.dest not in ("help", "version")
                   and env_name(next(o for o in a.option_strings if o.startswith("--"))) not in (a.help or "")]
        assert not missing
        assert env_name("--data-dir") == "CONTACTGRAPH_DATA_DIR"

    def test_a_real_process_reads_the_environment(self, tmp_path: Path) -> None:
        """In a child process (`python -m service.cli`):
        CONTACTGRAPH_PORT=abc stops `serve` with a usage error naming it."""
        import os

        env = dict(os.environ, CONTACTGRAPH_PORT="abc")
        out = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--snapshot", str(tmp_path)],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 2 and "CONTACTGRAPH_PORT='abc'" in out.stderr, out.stderr
