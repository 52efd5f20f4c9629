"""Every command and snippet of README.md works as written.

* every ``maxim-tf ...`` line of a ``bash`` block parses with the real command-line
  parser (so no documented flag can drift from the code);
* the ``maxim-tf restore`` lines run, in a folder holding the files they name;
* every ``python`` block runs there too;
* the quick start's two commands and the documented markers exist.
"""

import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from maxim_tf.cli import build_parser

REPO = pathlib.Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
SAMPLE = REPO / "examples" / "images" / "life_noisy_sigma25.png"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


DOCS = {p.name: p.read_text(encoding="utf-8") for p in sorted((REPO / "docs").glob("*.md"))}


def _blocks(language, text=README):
    return [body for lang, body in BLOCK.findall(text) if lang == language]


def _commands(text=README):
    """Logical lines of bash blocks (backslash continuations joined, comments dropped)."""
    out = []
    for body in _blocks("bash", text):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


MAXIM_COMMANDS = [c for c in _commands() if c.startswith("maxim-tf ")]
DOC_COMMANDS = [(name, c) for name, text in DOCS.items() for c in _commands(text)
                if c.startswith("maxim-tf ")]


def test_readme_has_commands_and_snippets():
    assert len(MAXIM_COMMANDS) >= 8
    assert _blocks("python")
    assert "bash scripts/quickstart.sh" in _commands() and "bash scripts/test.sh" in _commands()
    for path in ("scripts/quickstart.sh", "scripts/test.sh", "LICENSE", "docs/restoring.md",
                 "docs/deployment.md", "docs/training.md", "docs/conversion.md"):
        assert (REPO / path).is_file(), path


@pytest.mark.parametrize("command", MAXIM_COMMANDS)
def test_documented_command_parses(command):
    parser = build_parser()
    try:
        args = parser.parse_args(shlex.split(command)[1:])
    except SystemExit as e:
        pytest.fail(f"README command does not parse (exit {e.code}): {command}")
    assert callable(args.func)


@pytest.mark.parametrize("doc,command", DOC_COMMANDS)
def test_docs_command_parses(doc, command):
    try:
        build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as e:
        pytest.fail(f"docs/{doc} command does not parse (exit {e.code}): {command}")


def test_documented_markers_exist():
    ini = (REPO / "pytest.ini").read_text()
    for marker in re.findall(r"scripts/test\.sh -m (\w+)", README):
        assert f"{marker}:" in ini, marker


def test_relative_links_resolve():
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README):
        assert (REPO / target).exists(), target


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("readme")
    from PIL import Image

    with Image.open(SAMPLE) as img:
        small = img.crop((0, 0, 96, 80))
        small.save(work / "photo.jpg", quality=95)
        (work / "photos" / "sub").mkdir(parents=True)
        small.save(work / "photos" / "a.png")
        small.rotate(90).save(work / "photos" / "sub" / "b.png")
    return work


RESTORE_COMMANDS = [c for c in MAXIM_COMMANDS
                    if c.startswith("maxim-tf restore ") and "photo" in c]


@pytest.mark.parametrize("command", RESTORE_COMMANDS)
def test_documented_restore_runs(command, workdir):
    argv = shlex.split(command)
    proc = subprocess.run([sys.executable, "-m", "maxim_tf", *argv[1:]], cwd=workdir,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = workdir / argv[argv.index("-o") + 1]
    assert any(out.rglob("*.*")), f"{command} wrote nothing into {out}"


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_snippet_runs(index, workdir, tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(_blocks("python")[index])
    shutil.copy(workdir / "photo.jpg", tmp_path / "photo.jpg")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
