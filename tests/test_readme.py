"""Every command, snippet, link and machine- or model-dependent figure of the docs holds.

* every ``maxim-tf ...`` line of a ``bash`` block (README, docs/, model cards) parses
  with the real command-line parser (so no documented flag can drift from the code);
* the ``maxim-tf restore`` lines run, in a folder holding the files they name;
* every ``python`` block runs there too;
* the quick start's two commands and the documented markers exist;
* every relative link (and its ``#anchor``) of README.md, docs/*.md and the cards resolves;
* the figures that change with a model or a machine match what they come from: the
  demo PSNR (recomputed with the shipped model), the README's benchmark tables
  (``benchmarks/results/speed_report.json``, ``benchmarks/quality/quality.json``) and
  the cards' quality tables and speeds (``benchmarks/quality/quality.json``);
* no training log and no image dump is tracked (docs/development.md, "What is committed").
"""

import json
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
CARDS = {name: (REPO / "saved_models" / f"{name}.md").read_text(encoding="utf-8")
         for name in ("denoise", "deblur")}


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
DOC_COMMANDS = [(name, c) for name, text in
                [*DOCS.items(), *((f"../saved_models/{k}.md", v) for k, v in CARDS.items())]
                for c in _commands(text) if c.startswith("maxim-tf ")]


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


def _anchors(markdown):
    """GitHub's heading anchors of a Markdown text (fenced code left out)."""
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)
    seen, out = {}, set()
    for title in re.findall(r"^#{1,6} +(.+?) *$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out


LINKED = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
          *sorted((REPO / "saved_models").glob("*.md"))]


@pytest.mark.parametrize("page", LINKED, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    for target, anchor in re.findall(r"\]\(([^)#:\s]*)(?:#([^)\s]*))?\)", text):
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: {target}"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path.read_text(encoding="utf-8")), \
                f"{page.name}: {target}#{anchor}"


def test_no_training_logs_or_image_dumps_are_tracked():
    """A benchmark keeps its script, a small results file and at most one plot."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    proc = subprocess.run([git, "ls-files"], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"git ls-files failed: {proc.stderr.strip()}")
    files = [pathlib.PurePosixPath(f) for f in proc.stdout.splitlines()]
    logs = [str(f) for f in files if f.suffix in (".jsonl", ".log") or "events.out" in f.name]
    assert not logs, f"training logs are not committed: {logs}"
    images = [f for f in files if f.suffix.lower() in
              (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")]
    stray = [str(f) for f in images if f.parts[0] not in ("examples", "tests", "docs",
                                                          "benchmarks")]
    assert not stray, f"image files outside examples/, tests/, docs/ and benchmarks/: {stray}"
    for folder in {f.parts[1] for f in images if f.parts[0] == "benchmarks" and len(f.parts) > 2}:
        plots = [str(f) for f in images if f.parts[:2] == ("benchmarks", folder)]
        assert len(plots) <= 1, f"benchmarks/{folder}: one plot at most, found {plots}"


# --- figures that change with a model or a machine -------------------------------------

QUALITY = json.loads((REPO / "benchmarks" / "quality" / "quality.json").read_text())
SPEED = json.loads((REPO / "benchmarks" / "results" / "speed_report.json").read_text())


def _cases(task):
    """{case: {method: {psnr, ssim, seconds}}} of the committed combined quality run."""
    return {e["case"]: e["methods"] for e in QUALITY["summary"] if e["task"] == task}


def _seconds(task, method):
    return float(sum(m[method]["seconds"] for m in _cases(task).values()) / len(_cases(task)))


def test_demo_psnr_matches_the_shipped_model():
    """The quick start's 'about A -> B dB' is what scripts/quickstart.sh prints."""
    from maxim_tf import metrics
    from maxim_tf.image_io import read_image
    from maxim_tf.restore import Restorer

    quoted = re.search(r"about (\d+\.\d) →\s+(\d+\.\d) dB", README)
    assert quoted, "the quick start quotes the demo PSNR as 'about A → B dB'"
    images = REPO / "examples" / "images"
    noisy = read_image(images / "life_noisy_sigma25.png").pixels
    clean = read_image(images / "life_clean.png").pixels
    restored = Restorer("denoise")(noisy)  # what `maxim-tf restore` writes (test_shipped_models)
    measured = (f"{metrics.psnr(clean, noisy):.1f}", f"{metrics.psnr(clean, restored):.1f}")
    assert quoted.groups() == measured, f"README says {quoted.groups()}, the demo gives {measured}"


def test_readme_quality_table_matches_the_results_file():
    rows = [("denoise", "σ = 25", "BM3D", "BM3D, σ given"),
            ("denoise", "σ = 50", "BM3D", "BM3D, σ given"),
            ("deblur", "Gaussian σ = 2", "Wiener", "Wiener, kernel given"),
            ("deblur", "disk r = 4", "Wiener", "Wiener, kernel given")]
    for task, case, base, label in rows:
        m = _cases(task)[case]
        row = (f"| `{task}`, {case} | {m['input']['psnr']:.2f} | {m[base]['psnr']:.2f} ({label}) "
               f"| {m['ours']['psnr']:.2f} | {m[f'ours ({task}_int8.tflite)']['psnr']:.2f} |")
        assert row in README, f"README's quality table should read: {row}"
    timing = (f"`denoise` {_seconds('denoise', 'ours'):.2f} s against BM3D's "
              f"{_seconds('denoise', 'BM3D'):.2f} s, `deblur` {_seconds('deblur', 'ours'):.2f} s")
    assert timing in " ".join(README.split()), timing


def test_readme_speed_table_matches_the_speed_report():
    """The figures benchmarks/speed_report.py computes (its `markdown`) from its JSON."""
    peak = SPEED["matmul_gflops"]["float32"]
    fp32 = {row["size"]: row for row in SPEED["fp32"]}
    official = SPEED["official"]["times"]
    sizes = (256, 512, 1024)
    expected = [
        f"| % of the same-run 4096² matmul ({peak:.0f} GFLOP/s) | "
        + " | ".join(f"{100 * fp32[n]['work_gflop'] / fp32[n]['min_s'] / peak:.0f} %"
                     for n in sizes) + " |",
        "| seconds | " + " | ".join(f"{fp32[n]['min_s']:.2f}" for n in sizes) + " |",
        "| speed-up over the official JAX code | "
        + " | ".join(f"{min(official[str(n)]) / fp32[n]['min_s']:.2f}×" for n in sizes) + " |",
        f"t(1024²) / t(256²) = {fp32[1024]['min_s'] / fp32[256]['min_s']:.1f}",
        f"bf16 {min(SPEED['bf16']['fp32']) / min(SPEED['bf16']['bf16']):.2f}× fp32 at 512²",
        f"int8 TFLite {min(SPEED['tflite']['dynamic fp32']) / min(SPEED['tflite']['dynamic int8']):.2f}×"
        " fp32 TFLite",
    ]
    text = " ".join(README.split())
    for figure in expected:
        assert figure in text, f"README should read: {figure}"


def _section(markdown, title):
    start = markdown.index(f"\n## {title}")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:end if end > 0 else None]


def _cell(text):
    return text.replace("*", "").replace("`", "").replace("−", "-").strip()


@pytest.mark.parametrize("task", ["denoise", "deblur"])
def test_card_quality_table_matches_the_results_file(task):
    cases = _cases(task)
    table = [line for line in _section(CARDS[task], "Validation").splitlines()
             if line.startswith("|")]
    header = [_cell(c) for c in table[0].strip("|").split("|")]
    columns = {"noisy input": "input", "blurred input": "input", "BM3D (σ given)": "BM3D",
               "Wiener (kernel given)": "Wiener", "this model": "ours",
               f"{task}_fp32.tflite": f"ours ({task}_fp32.tflite)",
               f"{task}_int8.tflite": f"ours ({task}_int8.tflite)"}
    checked = set()
    for line in table[2:]:
        cells = [_cell(c) for c in line.strip("|").split("|")]
        m = cases[cells[0]]
        for name, value in zip(header[1:], cells[1:]):
            if name in columns:
                r = m[columns[name]]
                want = f"{r['psnr']:.2f} / {r['ssim']:.4f}"
            elif name in ("vs BM3D", "gain over input"):
                other = "BM3D" if name == "vs BM3D" else "input"
                want = f"{round(m['ours']['psnr'], 2) - round(m[other]['psnr'], 2):+.2f} dB"
            else:
                pytest.fail(f"{task}.md: unknown column {name!r}")
            assert value == want, f"{task}.md, {cells[0]}, {name}: {value} (results: {want})"
        checked.add(cells[0])
    assert checked == set(cases), f"{task}.md should list every case of the results file"
    int8 = [c[f"ours ({task}_int8.tflite)"]["psnr"] - c["ours"]["psnr"] for c in cases.values()]
    quoted = re.search(r"int8 file loses (\d+\.\d\d) dB on average against the Keras model "
                       r"\(worst (?:case )?-(\d+\.\d\d) dB", " ".join(_cell(CARDS[task]).split()))
    assert quoted and quoted.groups() == (f"{-sum(int8) / len(int8):.2f}", f"{-min(int8):.2f}")


@pytest.mark.parametrize("task", ["denoise", "deblur"])
def test_card_speeds_match_the_results_file(task):
    speed = " ".join(_section(CARDS[task], "Speed").split())
    methods = next(iter(_cases(task).values()))
    measured = {f"{_seconds(task, m):.2f}" for m in methods if "seconds" in methods[m]}
    quoted = re.findall(r"(\d+\.\d\d) s\b", speed)
    assert quoted and set(quoted) <= measured, (quoted, measured)
    for ratio in re.findall(r"(\d+\.\d)× faster", speed):
        assert ratio == f"{_seconds(task, 'BM3D') / _seconds(task, 'ours'):.1f}"


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


def test_readme_startup_table_matches_the_cold_start_results():
    """The S-2 start-up rows come from benchmarks/results/cold_start_s2.json."""
    r = json.loads((REPO / "benchmarks" / "results" / "cold_start_s2.json").read_text())
    keras, lite = r["keras"], r["litert"]
    expected = [
        f"| model load + graph preparation | {keras['load'] + keras['prepare']:.2f} | "
        f"{lite['load'] + lite['prepare']:.2f} |",
        f"| `maxim-tf restore` wall time | {keras['wall']:.2f} | {lite['wall']:.2f} |",
        f"| wall − forward pass of one more photo | {keras['wall'] - keras['forward']:.2f} | "
        f"{lite['wall'] - lite['forward']:.2f} |",
    ]
    text = " ".join(README.split())
    expected += [f"{r['twin']['build_s']} s for S-2", f"({r['twin']['max_abs_diff']:.1e} max difference)"]
    for row in expected:
        assert row in text, f"README should read: {row}"
