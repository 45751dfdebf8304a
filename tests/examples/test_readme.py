"""The README's code runs as written, and its layout table lists every module
(and every folder of the test suite).

Python blocks are executed in order in one namespace (a later block may
continue an earlier one), in a temporary directory. Shell blocks are
checked without running the long commands: each script exists and its
argument parser accepts the flags shown, each ``pip install`` extra exists.
``docs/gpu.md`` and ``docs/resume.md`` are checked the same way where they
show commands or signatures.
"""

from __future__ import annotations

import inspect
import re
import shlex
from pathlib import Path

import pytest

from tests.support import ROOT, load_script

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def code_blocks(path: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text()) if lang == language]


def shell_commands(block: str) -> list[list[str]]:
    """Logical command lines of a shell block, comments and env assignments removed."""
    joined = block.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        while words and ENV_ASSIGNMENT.match(words[0]):
            words = words[1:]
        if words:
            commands.append(words)
    return commands


def _extras() -> set[str]:
    """Names of ``[project.optional-dependencies]`` (no tomllib on Python 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([\w-]+)\s*=", section, re.MULTILINE))


def check_command(words: list[str]) -> None:
    program, args = words[0], words[1:]
    if program == "pip":
        assert args[0] == "install", words
        for arg in args[1:]:
            match = re.fullmatch(r"-?e?\s*\.?\[([\w,-]+)\]", arg.strip('"'))
            if match:
                for extra in match.group(1).split(","):
                    assert extra in _extras(), f"pip extra [{extra}] not in pyproject"
        return
    if program == "apt-get":
        assert args[-1] == "dataset-fashion-mnist", words
        return
    if program == "git":
        assert args[0] == "clone" and args[1].startswith("https://"), words
        return
    if program == "cd":
        return
    if program == "torchrun":
        scripts = [a for a in args if a.endswith(".py")]
        assert scripts and all((ROOT / s).is_file() for s in scripts), words
        return
    assert program == "python", f"unknown command in the docs: {words}"
    if args[:2] == ["-m", "pytest"]:
        return
    assert (ROOT / args[0]).is_file(), f"{args[0]} does not exist"
    module = load_script(args[0])
    assert hasattr(module, "parser"), f"{args[0]} has no parser() to check flags"
    module.parser().parse_args(args[1:])  # SystemExit(2) on an unknown flag


def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch):
    blocks = code_blocks(README, "python")
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "pair_scores.png").stat().st_size > 1000
    # the snippets learn: the comments give 0.84 / 0.80 and 0.92 / 0.93 on one
    # thread (0.67 to 0.90 over seeds); chance is 0.10
    assert namespace["accuracy"] > 0.6
    assert 0.5 <= namespace["gradmix"].helpful_fraction() <= 1.0
    assert namespace["ace_accuracy"] > 0.6 and namespace["last"] > 0.5


@pytest.mark.parametrize("doc", ["README.md", "docs/gpu.md"])
def test_shell_blocks_name_existing_scripts_and_flags(doc):
    commands = [
        words
        for block in code_blocks(ROOT / doc, "bash")
        for words in shell_commands(block)
    ]
    assert commands
    for words in commands:
        check_command(words)


def test_readme_layout_lists_every_module():
    text = README.read_text()
    layout = text[text.index("## Layout") :]
    missing = []
    for package in ("avalanche_mixplugins", "ssl_ext"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "__init__.py":
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            # `pkg.sub.mod` or, inside a sub-package row, `sub.mod`
            names = {".".join(parts), ".".join(parts[-2:])}
            if not any(f"`{name}`" in layout for name in names):
                missing.append(".".join(parts))
    # the tests/ row names every folder of the suite
    (tests_row,) = [row for row in layout.splitlines() if row.startswith("| `tests/`")]
    for folder in sorted((ROOT / "tests").glob("*/__init__.py")):
        if f"`{folder.parent.name}/`" not in tests_row:
            missing.append(f"tests/{folder.parent.name}/")
    assert not missing, f"README layout table misses {missing}"


def test_resume_doc_shows_checkpoint_plugin_signature():
    from avalanche_mixplugins.checkpoint import StateCheckpointPlugin

    shown = []
    seen_star = False
    for p in inspect.signature(StateCheckpointPlugin).parameters.values():
        if p.kind is p.KEYWORD_ONLY and not seen_star:
            shown.append("*")
            seen_star = True
        shown.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    expected = f"StateCheckpointPlugin({', '.join(shown)})"
    assert expected in (ROOT / "docs" / "resume.md").read_text(), expected


def test_package_metadata_licence_and_versions():
    import avalanche_mixplugins
    import ssl_ext

    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^license = "MIT"$', text, re.MULTILINE)
    assert re.search(r'^license-files = \["LICENSE"\]$', text, re.MULTILINE)
    for field in ("authors", "classifiers", "[project.urls]"):
        assert field in text, field
    urls = text.split("[project.urls]", 1)[1].split("\n[", 1)[0]
    for name in ("Repository", "Documentation"):
        assert re.search(rf'^{name} = "https://', urls, re.MULTILINE), name
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    version = re.search(r'^version = "([^"]+)"$', text, re.MULTILINE).group(1)
    assert avalanche_mixplugins.__version__ == ssl_ext.__version__ == version
