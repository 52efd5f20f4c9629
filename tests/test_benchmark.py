"""The benchmark runs end to end on a tiny model and writes its table and plot
(timings are not asserted: speed targets live in the benchmark, not in tests)."""

import json

from conftest import TINY_CONFIG

from maxim_tf.cli import main
from maxim_tf.tools.benchmark import compute_device, markdown_table, run_benchmark


def test_benchmark_writes_table_and_plot(tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_CONFIG))
    rows = run_benchmark([str(cfg)], sizes=[64], runtimes=["keras-graph"],
                         out_dir=tmp_path / "out", repeats=1, progress=lambda s: None)
    assert len(rows) == 1
    row = rows[0]
    assert row["min_s"] > 0 and row["median_s"] >= row["min_s"]
    assert row["peak_rss_mb"] > 100  # TensorFlow alone takes more than this
    assert row["matmul_gflops"] > 1 and row["graph_gflop"] > 0
    # Where the Keras row ran: "CPU", or on a machine with a GPU its name.
    assert row["device"] == compute_device()
    assert row["device"] == "CPU" or row["device"].startswith("GPU: ")
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| tiny | keras-graph | 64² |" in table and "% of matmul peak" in table
    assert (tmp_path / "out" / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "out" / "results.json").read_text())[0]["size"] == 64


def test_markdown_table_reports_share_of_peak():
    row = dict(model="S-3", runtime="keras-xla", size=256, min_s=2.0, median_s=2.1, first_s=30,
               peak_rss_mb=900, work_gflop=341.0, graph_gflop=300.0, gflops=170.5,
               matmul_gflops=219.0, pct_peak=100 * 170.5 / 219.0)
    table = markdown_table([row])
    assert "219.0 GFLOP/s" in table and "| 78% |" in table


def test_markdown_table_names_the_gpu():
    row = dict(model="S-3", runtime="keras-graph", size=512, min_s=0.1, median_s=0.1, first_s=9,
               peak_rss_mb=900, work_gflop=1364.0, graph_gflop=1228.7, gflops=13640.0,
               matmul_gflops=50000.0, pct_peak=27.3, device="GPU: NVIDIA H200 (1 visible)")
    cpu_row = dict(row, runtime="tflite-fp32", device="CPU")
    table = markdown_table([cpu_row, row])
    assert "Keras/SavedModel rows on GPU: NVIDIA H200 (1 visible), TFLite/ONNX rows on the CPU" in table
    assert "CPU" in markdown_table([cpu_row]) and "GPU" not in markdown_table([cpu_row])


def test_cli_rejects_unknown_model(tmp_path, capsys):
    code = main(["benchmark", "--models", "XL-9", "--sizes", "64", "--runtimes", "keras-graph",
                 "-o", str(tmp_path)])
    assert code == 2  # an unknown model is a usage error: nothing measured
    assert "Unknown model 'XL-9'" in capsys.readouterr().err
