"""The command line describes itself: every subcommand's --help has a description, help
on every flag, the choices (policies from the registry, datasets, groupings, modes) and
an example; one output-directory spelling; --print-config; atts/cli.py is the package's
only argument parser."""

import ast
from pathlib import Path

import pytest
import yaml

from atts.cli import build_parser, main
from atts.method.conformal import GROUPINGS
from atts.method.policies import POLICIES
from atts.tasks.datasets import DATASETS

ROOT = Path(__file__).resolve().parents[2]
CFG = str(ROOT / "configs" / "testbed.yaml")
COMMANDS = ("run", "calibrate", "evaluate", "servers", "compare", "bench", "soak", "report", "export", "grade",
            "reextract", "judge")


def help_of(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_describes_itself_and_gives_an_example(cmd, capsys):
    out = help_of([cmd], capsys)
    assert "examples:\n" in out and f"atts {cmd} " in out.split("examples:")[1]
    assert "see python -m" not in out and "see module docs" not in out
    sub = build_parser()._subparsers._group_actions[0].choices[cmd]
    assert sub.description and len(sub.description) > 30
    for action in sub._actions:  # every flag says what it does
        if action.option_strings and action.dest != "help":
            assert action.help, f"atts {cmd} {action.option_strings[0]} has no help"


@pytest.mark.parametrize("cmd", ["run", "evaluate", "compare", "calibrate"])
def test_help_lists_policies_datasets_groupings_modes(cmd, capsys):
    out = help_of([cmd], capsys)
    for name in POLICIES:
        assert f"\n  {name} " in out, name
    for name in DATASETS:
        assert name in out
    assert all(g in out for g in GROUPINGS) and "append, replace" in out


def test_top_level_help_lists_every_command(capsys):
    out = help_of([], capsys)
    assert all(f"    {c}" in out for c in COMMANDS) and "examples:" in out


def test_output_dir_spelling_and_its_alias():
    ap = build_parser()
    for argv in (["compare", "--config", CFG, "--policies", "atts"], ["bench", "--config", CFG], ["report", "r"],
                 ["soak"], ["export", "r", "--format", "jsonl"]):
        new = ap.parse_args([*argv, "--output-dir", "D"])
        old = ap.parse_args([*argv, "--output", "D"])
        assert new.output == old.output == "D", argv
    for cmd in ("run", "evaluate"):
        assert ap.parse_args([cmd, "--config", CFG, "--output", "D"]).output_dir == "D"


def test_print_config_resolves_extends_and_set(tmp_path, capsys):
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {CFG}\nsamples_per_question: 7\n")
    rc = main(["run", "--config", str(child), "--set", "policy.grouping=marginal", "--limit", "3",
               "--output-dir", str(tmp_path / "o"), "--print-config"])
    assert rc == 0
    d = yaml.safe_load(capsys.readouterr().out)
    assert d["samples_per_question"] == 7 and d["policy"]["grouping"] == "marginal"  # from child, from --set
    assert d["dataset"]["limit"] == 3 and d["draft"]["model"].endswith("chain-draft")  # flag, parent
    assert not (tmp_path / "o").exists()  # printed, nothing run
    assert main(["calibrate", "--config", str(child), "--print-config"]) == 0
    assert main(["run", "--config", str(tmp_path / "missing.yaml"), "--print-config"]) == 2


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("atts ")


def test_argparse_only_in_cli():
    """The commands are functions; atts/cli.py is the only module that parses arguments."""
    offenders = []
    for path in sorted((ROOT / "atts").rglob("*.py")):
        if path == ROOT / "atts" / "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "argparse" for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"argparse imported outside atts/cli.py: {offenders}"
