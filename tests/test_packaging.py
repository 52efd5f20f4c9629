"""What a user gets from ``pip install maxim-tf-*.whl``: built from a clean copy of the
tree, installed non-editable into fresh virtualenvs, run from an empty folder.

Marked ``packaging`` (a few minutes: two virtualenvs); ``.ci/run`` runs it
(``bash scripts/test.sh -m packaging``). pip's cache keeps the installs fast and
offline-friendly; nothing is downloaded that the test environment did not already have.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import venv
import zipfile

import pytest

pytestmark = pytest.mark.packaging

REPO = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "images" / "life_noisy_sigma25.png"
FIXTURE = REPO / "tests" / "fixtures" / "official" / "tiny1s_single_scale"
# Source folder -> its place in the wheel (setup.py's package_dir).
ROOTS = {"maxim_tf": "maxim_tf", "conversion": "maxim_tf/conversion",
         "export": "maxim_tf/export", "training": "maxim_tf/training",
         "saved_models": "maxim_tf/saved_models"}
RUNTIME_DATA = ("training/configs/*.json", "saved_models/*.keras", "saved_models/*.tflite",
                "saved_models/*.md", "saved_models/manifest.json")
LOG_LINE = re.compile(r"^(I0000|W0000|E0000|WARNING: All log messages)", re.M)


def _run(cmd, cwd, env=None, timeout=900, check=True):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                             f"stderr:\n{proc.stderr[-3000:]}")
    return proc


def _tree_files():
    """Tracked files plus untracked ones git does not ignore (what a clean clone has)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.split("\0") if f and (REPO / f).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel built with ``pip wheel --no-deps`` from a clean copy of the tree."""
    src = tmp_path_factory.mktemp("src")
    for rel in _tree_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
          "-w", str(dist), str(src)], cwd=src)
    (path,) = dist.glob("maxim_tf-*.whl")
    return path


def _venv(root, wheel, extras):
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    py = root / "bin" / "python"
    spec = f"{wheel}[{extras}]" if extras else str(wheel)
    _run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", spec], cwd=root)
    return root / "bin"


def _clean_env(home):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "MAXIM_TF", "TF_CPP"))}
    env["HOME"] = str(home)
    env["MAXIM_TF_HOME"] = str(home / "cache")
    env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR",
                                          str(pathlib.Path.home() / ".cache" / "pip"))
    return env


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    files = _tree_files()
    missing = []
    for rel in files:
        top, _, rest = rel.partition("/")
        if top in ROOTS and rest.endswith(".py") and f"{ROOTS[top]}/{rest}" not in names:
            missing.append(rel)
    for pattern in RUNTIME_DATA:
        for path in REPO.glob(pattern):
            top, _, rest = str(path.relative_to(REPO)).partition("/")
            if f"{ROOTS[top]}/{rest}" not in names:
                missing.append(str(path.relative_to(REPO)))
    assert not missing, f"the wheel lacks: {missing}"
    assert "maxim_tf/commands/restore.py" in names and "maxim_tf/saved_models/denoise.keras" in names
    assert not [n for n in names if n.startswith("tests/") or "/fixtures/" in n]
    dist_info = [n for n in names if n.endswith(".dist-info/METADATA")]
    metadata = zipfile.ZipFile(wheel).read(dist_info[0]).decode()
    assert "License" in metadata and "Apache-2.0" in metadata
    assert any(n.endswith("licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)


def test_installed_wheel_works_from_any_folder(wheel, tmp_path):
    bindir = _venv(tmp_path / "venv", wheel, "cpu,export")
    work = tmp_path / "empty"
    work.mkdir()
    env = _clean_env(tmp_path)
    mt = str(bindir / "maxim-tf")

    version = _run([mt, "--version"], cwd=work, env=env)
    assert re.fullmatch(r"maxim-tf \d+\.\d+\.\d+\s*", version.stdout)

    shutil.copy(SAMPLE, work / "photo.png")
    restore = _run([mt, "restore", "photo.png", "-o", "out"], cwd=work, env=env)
    from PIL import Image
    with Image.open(work / "photo.png") as a, Image.open(work / "out" / "photo.png") as b:
        assert a.size == b.size
    assert not LOG_LINE.search(restore.stderr), restore.stderr  # quiet by default
    assert "(litert)" in restore.stdout, restore.stdout  # the shipped model's verified twin
    assert "Traceback" not in restore.stderr

    convert = _run([mt, "convert", str(FIXTURE / "checkpoint.npz"), "--model-config",
                    str(FIXTURE / "config.json"), "-o", "tiny.keras",
                    "--reference", str(FIXTURE / "case_real_128x128_b1.npz")], cwd=work, env=env)
    assert (work / "tiny.keras").is_file() and "Max abs error" in convert.stdout

    _run([str(bindir / "python"), "-c",
          "import maxim_tf.export, maxim_tf.training, maxim_tf.conversion, maxim_tf.saved_models"],
         cwd=work, env=env)

    export = _run([mt, "export", str(work / "tiny.keras"), "--to", "tflite", "-o", "tiny.tflite"],
                  cwd=work, env=env)
    assert (work / "tiny.tflite").stat().st_size > 10_000
    assert not LOG_LINE.search(export.stderr), export.stderr

    saved = _run([mt, "export", str(work / "tiny.keras"), "--to", "savedmodel", "-o", "serving"],
                 cwd=work, env=env)  # warm-up records without tensorflow-serving-api
    assert list((work / "serving").glob("*/1/assets.extra/tf_serving_warmup_requests"))
    assert not LOG_LINE.search(saved.stderr), saved.stderr

    # The training configs ship with the package.
    configs = _run([str(bindir / "python"), "-c",
                    "import json, maxim_tf.training.config as c; c.load_config('denoise', ['model_dir=runs']); "
                    "print(json.dumps(sorted(p.stem for p in c.CONFIG_DIR.glob('*.json'))))"],
                   cwd=work, env=env)
    assert {"denoise", "deblur", "lomiri_denoise"} <= set(json.loads(configs.stdout))


def test_without_tensorflow_names_the_extra(wheel, tmp_path):
    bindir = _venv(tmp_path / "venv", wheel, "")
    work = tmp_path / "empty"
    work.mkdir()
    env = _clean_env(tmp_path)
    shutil.copy(SAMPLE, work / "photo.png")
    help_ = _run([str(bindir / "maxim-tf"), "--help"], cwd=work, env=env)
    assert "restore" in help_.stdout
    proc = _run([str(bindir / "maxim-tf"), "restore", "photo.png", "-o", "out"], cwd=work, env=env,
                check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert 'pip install "maxim-tf[cpu]"' in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (work / "out").exists()


def _modules_reading_fixtures():
    """Test modules that read ../shared or the committed sample photos that stand in for
    it (those that would fail first on a clone without ../shared)."""
    names = ("SHARED", "SAMPLE_IMAGES")
    return sorted(p.name for p in (REPO / "tests").glob("test_*.py")
                  if p.name != "test_packaging.py"
                  and any(n in line for line in p.read_text().splitlines()
                          if line.startswith("from conftest import") for n in names))


def test_readme_test_command_in_a_clone_with_nothing_beside_it(tmp_path):
    """The README's test command (``bash scripts/test.sh``) in a copy of the tree whose
    parent holds nothing else (no ../shared): the modules that read fixtures pass there."""
    readme = (REPO / "README.md").read_text()
    assert "bash scripts/test.sh" in readme
    clone = tmp_path / "clone"
    for rel in _tree_files():
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, clone / rel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clone"]
    modules = _modules_reading_fixtures()
    assert {"test_parity.py", "test_restore.py", "test_cli_restore.py"} <= set(modules)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(CI="true", HOME=str(tmp_path / "home"),
               PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR",
                                            str(pathlib.Path.home() / ".cache" / "pip")))
    proc = _run(["bash", "scripts/test.sh", "-q", "-ra", "-p", "no:cacheprovider",
                 *[f"tests/{m}" for m in modules]], cwd=clone, env=env, timeout=1200, check=False)
    tail = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    summary = proc.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary and "error" not in summary, tail
    # what a clone lacks is named in a skip, not failed
    assert "tiny3s" in proc.stdout, tail
