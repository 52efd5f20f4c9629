"""The Apache Beam pipeline (maxim_tf.tools.beam, ``maxim-tf restore-beam``) on the DirectRunner.

Runs with ``bash scripts/test.sh -m beam`` (EXTRAS including ``beam``); skipped when
apache-beam is not installed. The model is the shipped ``denoise`` (LiteRT backend:
loads in well under a second, no graph tracing), as ``maxim-tf restore`` runs it.
"""

import json
import os
import pathlib

import numpy as np
import pytest

pytestmark = pytest.mark.beam
apache_beam = pytest.importorskip(
    "apache_beam", reason="apache-beam is not installed (pip install 'maxim-tf[beam]')")

from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from PIL import Image  # noqa: E402

from maxim_tf import cli  # noqa: E402
from maxim_tf.image_io import read_image  # noqa: E402
from maxim_tf.restore import Restorer  # noqa: E402
from maxim_tf.tools import beam as mbeam  # noqa: E402

MODEL = "denoise"
SIZES = [(32, 32), (40, 56), (33, 47), (64, 48)]
BROKEN = {"broken/truncated.png", "broken/empty.png", "broken/text.jpg"}


def _make_inputs(root):
    rng = np.random.default_rng(0)
    names = []
    for i in range(17):
        h, w = SIZES[i % len(SIZES)]
        kind = i % 5
        sub = "" if i < 8 else "sub/" if i < 14 else "sub/deeper/"
        if kind == 0:
            img, name = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), f"rgb{i}.png"
        elif kind == 1:
            img, name = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), f"photo{i}.jpg"
        elif kind == 2:
            img, name = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L"), f"gray{i}.png"
        elif kind == 3:
            img, name = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA"), f"alpha{i}.png"
        else:
            img, name = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), f"bitmap{i}.bmp"
        path = root / (sub + name)
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, quality=90) if name.endswith(".jpg") else img.save(path)
        names.append(sub + name)
    (root / "broken").mkdir()
    good = (root / names[0]).read_bytes()
    (root / "broken/truncated.png").write_bytes(good[:len(good) // 2])
    (root / "broken/empty.png").write_bytes(b"")
    (root / "broken/text.jpg").write_text("this is not a JPEG\n")
    return names + sorted(BROKEN)


def _options(runner="DirectRunner", workers=2):
    flags = [f"--runner={runner}"]
    if runner == "DirectRunner":
        flags += [f"--direct_num_workers={workers}",
                  "--direct_running_mode=" + ("multi_threading" if workers > 1 else "in_memory")]
    return PipelineOptions(flags)


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _manifest(out):
    return [json.loads(line) for line in (out / mbeam.MANIFEST).read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Inputs, the `maxim-tf restore` reference and one pipeline run (2 DirectRunner workers)."""
    root = tmp_path_factory.mktemp("beam")
    inputs = root / "in"
    names = _make_inputs(inputs)
    reference = root / "reference"
    assert cli.main(["restore", str(inputs), "-r", "-o", str(reference), "--model", MODEL,
                     "-q"]) == 1  # the three broken files fail
    out = root / "out"
    loads = mbeam.LOAD_CALLS
    handler = mbeam.MaximModelHandler(MODEL, images_per_batch=4)
    _, metrics = mbeam.run([str(inputs / "**")], str(out), handler, _options())
    return dict(inputs=inputs, names=names, reference=reference, out=out, metrics=metrics,
                loads=mbeam.LOAD_CALLS - loads)


def test_outputs_equal_maxim_tf_restore_file_for_file(run):
    out, reference = run["out"], run["reference"]
    images = [f for f in _files(out) if f not in (mbeam.MANIFEST, mbeam.DEAD_LETTER)]
    assert images == _files(reference)
    assert len(images) == len(run["names"]) - len(BROKEN)
    for name in images:  # same names, formats, and bytes (hence pixels) as `maxim-tf restore`
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_outputs_equal_restorer_pixel_for_pixel(run):
    restorer = Restorer(MODEL)
    for name in run["names"]:
        if name in BROKEN or not name.endswith(".png"):
            continue
        image = read_image(run["inputs"] / name)
        expected = restorer(image.pixels)
        got = read_image(run["out"] / name)
        np.testing.assert_array_equal(got.pixels, expected, err_msg=name)
        if image.alpha is not None:
            np.testing.assert_array_equal(got.alpha, image.alpha)


def test_manifest_lists_every_input_once_with_its_status(run):
    records = _manifest(run["out"])
    by_input = {r["input"]: r for r in records}
    assert len(records) == len(by_input) == len(run["names"])
    assert set(by_input) == {str(run["inputs"] / n) for n in run["names"]}
    for name in run["names"]:
        r = by_input[str(run["inputs"] / name)]
        assert set(r) == {"input", "output", "width", "height", "seconds", "status", "error"}
        if name in BROKEN:
            assert r["status"] == "failed" and r["output"] is None, r
            assert r["error"].startswith(r["input"] + ": "), r
        else:
            assert r["status"] == "restored" and r["error"] is None, r
            with Image.open(r["output"]) as im:
                assert (r["width"], r["height"]) == im.size
            assert r["seconds"] >= 0
    assert "empty (0 bytes)" in by_input[str(run["inputs"] / "broken/empty.png")]["error"]
    dead = [json.loads(line) for line in (run["out"] / mbeam.DEAD_LETTER).read_text().splitlines()]
    assert sorted(r["input"] for r in dead) == sorted(str(run["inputs"] / n) for n in BROKEN)


def test_metrics_and_model_loaded_once_per_worker(run):
    metrics = run["metrics"]
    good = len(run["names"]) - len(BROKEN)
    assert metrics["images"] == good and metrics["failures"] == len(BROKEN)
    assert metrics["skipped"] == 0
    pixels = sum(h * w for h, w in (SIZES[i % len(SIZES)] for i in range(good)))
    assert metrics["pixels"] == pixels
    assert metrics["ms_per_megapixel"] > 0
    # Two DirectRunner worker threads in one process share one model.
    assert run["loads"] == 1


def test_rerun_with_skip_existing_restores_nothing_new(run):
    out = run["out"]
    stamps = {name: os.stat(out / name).st_mtime_ns for name in _files(out)
              if name not in (mbeam.MANIFEST, mbeam.DEAD_LETTER)}
    (out / run["names"][1].replace(".jpg", ".jpg")).unlink()  # one output is missing
    missing = run["names"][1]
    handler = mbeam.MaximModelHandler(MODEL)
    _, metrics = mbeam.run([str(run["inputs"] / "**")], str(out), handler, _options(workers=1),
                           skip_existing=True)
    assert metrics["images"] == 1 and metrics["skipped"] == len(stamps) - 1
    assert metrics["failures"] == len(BROKEN)
    for name, stamp in stamps.items():
        if name != missing:
            assert os.stat(out / name).st_mtime_ns == stamp, f"{name} was rewritten"
    assert (out / missing).read_bytes() == (run["reference"] / missing).read_bytes()
    statuses = {r["input"]: r["status"] for r in _manifest(out)}
    assert len(statuses) == len(run["names"])
    assert statuses[str(run["inputs"] / missing)] == "restored"
    assert sum(s == "skipped" for s in statuses.values()) == len(stamps) - 1


def test_bundle_retry_leaves_no_duplicate_or_half_written_file(run, tmp_path, monkeypatch):
    """The BundleBasedDirectRunner retries a failed bundle (as Dataflow does): the write
    that crashed after its temporary file was written and before the rename is redone."""
    calls = {}

    def crash_once(path):
        calls[path] = calls.get(path, 0) + 1
        if path.endswith("rgb0.png") and calls[path] == 1:
            leftovers = [p for p in os.listdir(os.path.dirname(path)) if p.endswith(".tmp")]
            assert leftovers, "the temporary file exists before the rename"
            raise RuntimeError("simulated worker crash between write and rename")

    monkeypatch.setattr(mbeam, "_before_rename", crash_once)
    out = tmp_path / "out"
    loads = mbeam.LOAD_CALLS
    _, metrics = mbeam.run([str(run["inputs"] / "*.png"), str(run["inputs"] / "sub/*.jpg")],
                           str(out), mbeam.MaximModelHandler(MODEL),
                           _options("BundleBasedDirectRunner"))
    crashed = [p for p, n in calls.items() if p.endswith("rgb0.png")]
    assert crashed and calls[crashed[0]] == 2, calls
    assert mbeam.LOAD_CALLS - loads == 1
    files = _files(out)
    assert not [f for f in files if f.endswith(".tmp") or "/." in "/" + f], files
    pngs = sorted(n for n in run["names"] if "/" not in n and n.endswith(".png"))
    jpgs = sorted(n.split("/", 1)[1] for n in run["names"] if n.startswith("sub/")
                  and n.count("/") == 1 and n.endswith(".jpg"))
    assert files == sorted([mbeam.DEAD_LETTER, mbeam.MANIFEST] + pngs + jpgs)
    for name in pngs:
        assert (out / name).read_bytes() == (run["reference"] / name).read_bytes(), name
    records = _manifest(out)
    assert len(records) == len({r["input"] for r in records}) == len(pngs) + len(jpgs)
    assert all(r["status"] == "restored" for r in records)


def test_glob_base_and_output_names():
    here = pathlib.Path.cwd()
    assert mbeam.glob_base("in/**/*.png") == (str(here / "in/**/*.png"), str(here / "in") + "/")
    assert mbeam.glob_base("gs://b/x/*.jpg") == ("gs://b/x/*.jpg", "gs://b/x/")
    assert mbeam.glob_base("gs://b/x/a.png")[1] == "gs://b/x/"
    assert mbeam.output_path("gs://b/x/s/a.gif", "gs://b/x/", "gs://o/p", "GIF") == ("gs://o/p/s/a.png", "PNG")
    assert mbeam.output_path("/i/a.jpeg", "/i/", "/o", "JPEG", "png") == ("/o/a.png", "PNG")


def test_cli_restore_beam_runs_and_passes_pipeline_options(run, tmp_path, capsys):
    args = cli.build_parser().parse_args(
        ["restore-beam", str(run["inputs"] / "*.png"), "--output-dir", str(tmp_path / "o"),
         "--direct-num-workers", "2", "--pipeline-options", "--job_name=maxim-test",
         "--pickle_library=cloudpickle"])
    assert args.pipeline_options == ["--job_name=maxim-test", "--pickle_library=cloudpickle"]
    from maxim_tf.commands.restore_beam import pipeline_options

    opts = pipeline_options(args).get_all_options()
    assert opts["runner"] == "DirectRunner" and opts["direct_num_workers"] == 2
    assert opts["job_name"] == "maxim-test"
    status = cli.main(["restore-beam", str(run["inputs"] / "*.png"), "-o", str(tmp_path / "o"),
                       "--skip-existing"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "Restored" in printed and "0 failed" in printed
    assert (tmp_path / "o" / mbeam.MANIFEST).is_file()


def test_stack_same_size_batches_match_single_images_to_one_level(run):
    handler = mbeam.MaximModelHandler(MODEL, images_per_batch=4, stack_same_size=True)
    assert handler.batch_elements_kwargs()["max_batch_size"] == 4
    worker = handler.load_model()
    items = [mbeam.Item(src=f"x{i}.png", dst=f"y{i}.png", format="PNG",
                        pixels=read_image(run["inputs"] / run["names"][i]).pixels)
             for i in (0, 4, 8, 1)]  # rgb0, bitmap4, rgb8 (32x32, 32x32, 32x32) and 40x56
    results = handler.run_inference(items, worker)
    restorer = Restorer(MODEL)
    for item, result in zip(items, results):
        assert result.error is None and result.item is item and result.seconds > 0
        diff = np.abs(result.pixels.astype(int) - restorer(item.pixels).astype(int))
        assert diff.max() <= 1, item.src
    bad = mbeam.Item(src="bad.png", dst="bad_out.png", format="PNG",
                     pixels=np.zeros((0, 5, 3), np.uint8))
    failed = handler.run_inference([bad], worker)[0]
    assert failed.pixels is None and failed.error.startswith("bad.png: ")


def test_inputs_sharing_an_output_name_are_refused_as_restore_does(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "dup"
    folder.mkdir()

    def image():
        return Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8))

    image().save(folder / "x.jpg")
    image().save(folder / "x.jpeg", format="JPEG")
    image().save(folder / "y.png")
    image().convert("P").save(folder / "y.gif")  # GIF -> PNG: the same output as y.png
    image().save(folder / "z.png")
    reference = tmp_path / "reference"
    assert cli.main(["restore", str(folder), "-o", str(reference), "--model", MODEL, "-q"]) == 1
    out = tmp_path / "out"
    _, metrics = mbeam.run([str(folder / "*")], str(out), mbeam.MaximModelHandler(MODEL),
                           _options(workers=1))
    assert metrics["images"] == 3 and metrics["failures"] == 2
    status = {pathlib.Path(r["input"]).name: r for r in _manifest(out)}
    assert {k: r["status"] for k, r in status.items()} == {
        "x.jpeg": "restored", "x.jpg": "failed", "y.gif": "restored", "y.png": "failed",
        "z.png": "restored"}
    assert status["x.jpg"]["error"] == (f"{folder / 'x.jpg'}: output {out / 'x.jpg'} would "
                                        f"overwrite the output of {folder / 'x.jpeg'}")
    images = [f for f in _files(out) if f not in (mbeam.MANIFEST, mbeam.DEAD_LETTER)]
    assert images == _files(reference) == ["x.jpg", "y.png", "z.png"]
    for name in images:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


class _RecordingHandler(mbeam.MaximModelHandler):
    """Keeps the workers' models (in-process DirectRunner) so a test can call them itself."""

    loaded = []

    def load_model(self):
        worker = super().load_model()
        _RecordingHandler.loaded.append(worker)
        return worker


def test_keras_model_file_on_two_worker_threads(run, tiny_model, tmp_path):
    """A .keras model runs on the Keras backend, whose traced function the two worker
    threads call concurrently (no lock): outputs equal the worker's Restorer called
    directly, image by image; one load."""
    path = tmp_path / "tiny.keras"
    tiny_model.save(path)
    pngs = [n for n in run["names"] if n.endswith(".png") and "/" not in n and n not in BROKEN]
    out = tmp_path / "out"
    loads = mbeam.LOAD_CALLS
    _RecordingHandler.loaded.clear()
    _, metrics = mbeam.run([str(run["inputs"] / "*.png")], str(out), _RecordingHandler(path, threads=1),
                           _options())
    assert mbeam.LOAD_CALLS - loads == 1 and len(_RecordingHandler.loaded) == 1
    assert metrics["images"] == len(pngs) and metrics["failures"] == 0
    restorer = _RecordingHandler.loaded[0].restorer
    assert restorer.backend == "keras" and str(restorer.model_path) == str(path)
    for name in pngs:
        expected = restorer(read_image(run["inputs"] / name).pixels)
        np.testing.assert_array_equal(read_image(out / name).pixels, expected, err_msg=name)


def test_an_input_file_is_never_overwritten(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for name in ("x.jpg", "x.jpeg", "z.png"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            folder / name, format="PNG" if name.endswith(".png") else "JPEG")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    _, metrics = mbeam.run([str(folder / "*")], str(folder), mbeam.MaximModelHandler(MODEL),
                           _options(workers=1))
    assert metrics["images"] == 0 and metrics["failures"] == 3
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix != ".jsonl"} == before
    errors = {pathlib.Path(r["input"]).name: r["error"] for r in _manifest(folder)}
    assert "would overwrite the input file" in errors["x.jpeg"]
    assert "is the input file itself" in errors["x.jpg"] and "itself" in errors["z.png"]
