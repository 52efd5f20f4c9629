"""End-to-end training runs (each in its own process: logical devices, TF_CONFIG and
determinism are process-wide). A tiny 1-stage, 2-scale MAXIM keeps each run short."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

# 124 variables: the optimizer and gradient graphs stay small enough to trace fast.
MODEL = dict(features=8, depth=2, num_stages=1, num_groups=1, num_supervision_scales=2,
             num_bottleneck_blocks=1, block_size_hr=[8, 8], grid_size_hr=[8, 8],
             block_size_lr=[4, 4], grid_size_lr=[4, 4], use_global_mlp=False,
             use_cross_gating=False)


def make_photos(folder, n=4, size=(24, 32)):
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:size[0], 0:size[1]] / 8.0
    for i in range(n):
        img = np.stack([np.sin(x * (i + 1) + y), np.cos(y * (i + 2)), np.sin(x * y / 3)], -1)
        Image.fromarray(((img * 0.4 + 0.5) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def write_config(tmp_path, **overrides):
    config = {
        "variant": None, "model": MODEL,
        "data": {"source": "synthetic", "folder": str(make_photos(tmp_path / "photos")),
                 "degradations": [{"type": "gaussian_noise", "sigma": [10, 30]},
                                  {"type": "gaussian_blur", "sigma": [0.5, 1.0], "p": 0.5}]},
        "crop_size": 16, "global_batch_size": 4, "steps": 6, "seed": 1,
        "augment": {"mixup": 0.5},
        "checkpoint_every": 2, "log_every": 1, "eval_every": 0,
        "deterministic": True, "graph_optimizations": False,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = tmp_path / f"config_{len(list(tmp_path.glob('config_*.json')))}.json"
    path.write_text(json.dumps(config))
    return path


def train_cmd(config, model_dir, *extra):
    return [sys.executable, "-m", "maxim_tf", "train", "--config", str(config),
            "--model-dir", str(model_dir), "--quiet", *extra]


def hooked_train_cmd(config, model_dir, *extra, **hooks):
    """:func:`train_cmd` through ``train_hooked.py`` with test hooks, e.g.
    ``dump_weights=PREFIX``, ``step_delay=0.5``, ``nan_at_step=3``."""
    options = [a for k, v in hooks.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    return [sys.executable, str(REPO / "tests" / "train_hooked.py"), *options,
            *train_cmd(config, model_dir, *extra)[4:]]


def env(**extra):
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    e.update(extra)
    return e


def run(cmd, **kw):
    return subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True,
                          timeout=600, **kw)


def losses_by_step(model_dir):
    """Losses of train_log.jsonl (a resumed run re-logs steps after its checkpoint: keep the last)."""
    out = {}
    for line in (model_dir / "train_log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[rec["step"]] = rec["loss"]
    return out


def load_dump(path):
    with np.load(path) as z:
        return [z[k] for k in sorted(z.files)]


def assert_ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


def test_overfitting_a_tiny_set_lowers_the_loss_and_exports(tmp_path):
    config = write_config(
        tmp_path, steps=40, crop_size=16, augment={"flips": False, "rot90": False, "mixup": 0.0},
        optimizer={"learning_rate": 2e-3, "warmup_steps": 2}, checkpoint_every=20,
        eval_every=20, eval_images=2,
        data={"source": "synthetic", "folder": str(make_photos(tmp_path / "one", 1, (16, 16))),
              "degradations": [{"type": "gaussian_blur", "sigma": 1.0}]})
    proc = run(train_cmd(config, tmp_path / "run"))
    assert_ok(proc)
    losses = losses_by_step(tmp_path / "run")
    assert sorted(losses) == list(range(1, 41))
    first, last = np.mean([losses[s] for s in range(1, 6)]), np.mean([losses[s] for s in range(36, 41)])
    assert last < 0.5 * first, (first, last)
    assert "images/s" in proc.stdout
    # The artifact is the converter's format: a one-output float32 MAXIM.
    code = ("import keras, maxim_tf, numpy as np, sys; "
            f"m = keras.saving.load_model({str(tmp_path / 'run' / 'model.keras')!r}); "
            "y = m(np.zeros((1, 16, 16, 3), 'float32')); "
            "print(type(m).__name__, m.return_all_outputs, tuple(y.shape), y.dtype)")
    check = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True)
    assert "MAXIM False (1, 16, 16, 3) <dtype: 'float32'>" in check.stdout, check.stderr[-2000:]
    # TensorBoard got per-scale losses, the learning rate, validation metrics and images.
    code = ("import tensorflow as tf, glob; tags = set(); "
            f"[tags.add(v.tag) for f in glob.glob({str(tmp_path / 'run' / 'tensorboard' / '*')!r}) "
            "for e in tf.compat.v1.train.summary_iterator(f) for v in e.summary.value]; "
            "print(sorted(tags))")
    tags = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True).stdout
    for tag in ("loss/total", "loss/stage0_scale0", "loss/stage0_scale1", "learning_rate",
                "train_sample/psnr", "train_sample/ssim", "train_sample/input|output|target"):
        assert tag in tags, tags


def test_mirrored_two_replicas_equal_one_device(tmp_path):
    """Same global batch: 2 logical CPU replicas follow the 1-device trajectory.

    Tolerance: losses rtol 1e-5, weights atol 1e-5 (float32 sums in a different order).
    Gradient clipping is on and binding, so the global-norm path is covered too.
    """
    config = write_config(tmp_path, steps=4, optimizer={"clip_global_norm": 0.05})
    procs = {
        "one": subprocess.Popen(hooked_train_cmd(config, tmp_path / "one", "--strategy", "single",
                                                 dump_weights=tmp_path / "one_w"),
                                cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        "two": subprocess.Popen(hooked_train_cmd(config, tmp_path / "two", "--strategy", "mirrored",
                                                 "--cpu-replicas", "2", dump_weights=tmp_path / "two_w"),
                                cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    }
    for name, p in procs.items():
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, f"{name}: {err[-4000:]}"
        if name == "two":
            assert "Training on 2 replica(s)" in err, err[-3000:]
    one, two = losses_by_step(tmp_path / "one"), losses_by_step(tmp_path / "two")
    assert sorted(one) == sorted(two) == [1, 2, 3, 4]
    diff = max(abs(one[s] - two[s]) / abs(one[s]) for s in one)
    print(f"max relative loss difference 1 vs 2 replicas: {diff:.2e}")
    assert diff < 1e-5
    w1, w2 = load_dump(f"{tmp_path / 'one_w'}.chief.npz"), load_dump(f"{tmp_path / 'two_w'}.chief.npz")
    assert len(w1) == len(w2)
    assert max(float(np.abs(a - b).max()) for a, b in zip(w1, w2)) < 1e-5
    # Training really moved the weights (the comparison is not between two initial states).
    init = subprocess.run([sys.executable, "-c", (
        "import keras, maxim_tf, numpy as np; keras.utils.set_random_seed(1); "
        f"m = maxim_tf.MAXIM(**{MODEL!r}, return_all_outputs=True); "
        "print(max(float(np.abs(v.numpy()).sum()) for v in m.weights[:1]))")],
        env=env(), capture_output=True, text=True)
    assert init.returncode == 0, init.stderr[-2000:]
    assert abs(float(init.stdout.split()[-1]) - float(np.abs(w1[0]).sum())) > 1e-4


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multi_worker_two_processes_end_with_identical_weights(tmp_path):
    config = write_config(tmp_path, steps=3, checkpoint_every=3)
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        e = env(TF_CONFIG=tf_config)
        procs.append(subprocess.Popen(
            hooked_train_cmd(config, tmp_path / "run", "--strategy", "multi_worker",
                             dump_weights=tmp_path / "w"),
            cwd=REPO, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:  # wait for both workers before judging either (one may finish a moment later)
        for p in procs:
            outputs.append(p.communicate(timeout=600))
    finally:
        for q in procs:
            if q.poll() is None:
                q.kill()
    for i, (p, (_, err)) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"worker {i}: {err[-4000:]}"
    w0, w1 = load_dump(f"{tmp_path / 'w'}.worker_0.npz"), load_dump(f"{tmp_path / 'w'}.worker_1.npz")
    assert len(w0) == len(w1) > 100
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)
    assert sorted(losses_by_step(tmp_path / "run")) == [1, 2, 3]  # logged by the chief only
    assert (tmp_path / "run" / "model.keras").exists()
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("ckpt-*.index")) == ["ckpt-3.index"]
    assert not list((tmp_path / "run").glob("checkpoints_tmp/*/ckpt-*"))  # worker 1's copies removed


@pytest.mark.slow  # ~30 s idle, ~65 s on busy cores; the data-position part is fast-tested
def test_kill_and_resume_reproduces_the_trajectory(tmp_path):
    steps = 8
    config = write_config(tmp_path, steps=steps, checkpoint_every=2)
    assert_ok(run(hooked_train_cmd(config, tmp_path / "ref", dump_weights=tmp_path / "ref_w")))
    ref = losses_by_step(tmp_path / "ref")

    run_dir = tmp_path / "run"
    # Slowed down (not changed numerically) so the kill lands mid-run.
    err_path = tmp_path / "killed.err"
    with open(err_path, "w") as err:  # a file, not a pipe: a full pipe would block the run
        p = subprocess.Popen(hooked_train_cmd(config, run_dir, step_delay=0.5),
                             cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=err)
    log = run_dir / "train_log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert p.poll() is None, f"run ended before it could be killed: {err_path.read_text()[-3000:]}"
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = max(losses_by_step(run_dir))
    assert done < steps
    # A kill *during* a save: files of the next checkpoint half-written, state file untouched.
    latest = (run_dir / "checkpoints" / "checkpoint").read_text()
    (run_dir / "checkpoints" / f"ckpt-{steps}.index").write_bytes(b"\x00partial")
    (run_dir / "checkpoints" / f"ckpt-{steps}.data-00000-of-00001").write_bytes(b"\x00" * 10)

    again = run(train_cmd(config, run_dir))
    assert again.returncode == 2 and "--resume" in again.stderr
    assert (run_dir / "checkpoints" / "checkpoint").read_text() == latest

    resumed = run(hooked_train_cmd(config, run_dir, "--resume", dump_weights=tmp_path / "run_w"))
    assert_ok(resumed)
    got = losses_by_step(run_dir)
    assert sorted(got) == list(range(1, steps + 1))
    np.testing.assert_allclose([got[s] for s in range(1, steps + 1)],
                               [ref[s] for s in range(1, steps + 1)], rtol=1e-6)
    for a, b in zip(load_dump(f"{tmp_path / 'ref_w'}.chief.npz"), load_dump(f"{tmp_path / 'run_w'}.chief.npz")):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    config = write_config(tmp_path, steps=6, checkpoint_every=2)
    proc = run(hooked_train_cmd(config, tmp_path / "run", nan_at_step=3))
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Loss became nan at step 3" in proc.stderr
    assert "ckpt-2" in proc.stderr
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("ckpt-*.index")) == ["ckpt-2.index"]
    assert 'model_checkpoint_path: "ckpt-2"' in (ckpts / "checkpoint").read_text()
    assert not (tmp_path / "run" / "model.keras").exists()
    assert max(losses_by_step(tmp_path / "run")) == 2
    # On demand: the last good checkpoint becomes the .keras artifact.
    exported = run(train_cmd(config, tmp_path / "run", "--resume", "--export-only"))
    assert_ok(exported)
    assert "Exported the checkpoint of step 2" in exported.stdout
    assert (tmp_path / "run" / "model.keras").exists()


def test_fine_tuning_starts_from_a_keras_model(tmp_path):
    src = tmp_path / "pretrained.keras"
    code = ("import keras, maxim_tf; keras.utils.set_random_seed(7); "
            f"maxim_tf.MAXIM(**{MODEL!r}).save({str(src)!r})")
    made = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True)
    assert made.returncode == 0, made.stderr[-2000:]
    # Under mixed_bfloat16: variables stay float32 and the artifact is float32.
    config = write_config(tmp_path, steps=1, model={}, init_from=str(src),
                          mixed_precision="mixed_bfloat16",
                          optimizer={"learning_rate": 1e-12, "end_learning_rate": 0.0})
    assert_ok(run(train_cmd(config, tmp_path / "run")))
    code = ("import keras, maxim_tf, numpy as np; "
            f"a = keras.saving.load_model({str(src)!r}); "
            f"b = keras.saving.load_model({str(tmp_path / 'run' / 'model.keras')!r}); "
            "assert all(w.dtype == np.float32 for w in b.get_weights()); "
            "print(max(float(np.abs(x - y).max()) for x, y in zip(a.get_weights(), b.get_weights())))")
    cmp = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True)
    assert cmp.returncode == 0, cmp.stderr[-2000:]
    assert float(cmp.stdout.split()[-1]) < 1e-6
    # A config that disagrees with the model is refused, naming the differing keys.
    bad = write_config(tmp_path, steps=1, model={"features": 16}, init_from=str(src))
    proc = run(train_cmd(bad, tmp_path / "bad"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "different MAXIM config" in proc.stderr and "features: model 8 vs config 16" in proc.stderr


@pytest.mark.slow
def test_mixed_float16_with_clipping_on_two_replicas(tmp_path):
    """Loss scaling (dynamic, may skip first steps), global-norm clipping and Mirrored together."""
    config = write_config(tmp_path, steps=4, eval_every=2, eval_images=2,
                          mixed_precision="mixed_float16", optimizer={"clip_global_norm": 1.0})
    proc = run(train_cmd(config, tmp_path / "run", "--strategy", "mirrored", "--cpu-replicas", "2"))
    assert_ok(proc)
    losses = losses_by_step(tmp_path / "run")
    assert sorted(losses) == [1, 2, 3, 4] and all(np.isfinite(list(losses.values())))
    code = ("import keras, maxim_tf, numpy as np; "
            f"m = keras.saving.load_model({str(tmp_path / 'run' / 'model.keras')!r}); "
            "print(m.dtype_policy.name, all(w.dtype == np.float32 for w in m.get_weights()))")
    check = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True)
    assert check.stdout.split()[-2:] == ["float32", "True"], check.stderr[-2000:]


def single_output_config(tmp_path):
    """Two steps of a one-stage, one-scale model with an evaluation at step 2."""
    return write_config(
        tmp_path, steps=2, eval_every=2, eval_images=2, augment={"mixup": 0.0},
        model=dict(MODEL, num_stages=1, num_supervision_scales=1),
        data={"source": "synthetic", "folder": str(make_photos(tmp_path / "photos")),
              "val_folder": str(make_photos(tmp_path / "val", 2)),
              "degradations": [{"type": "gaussian_noise", "sigma": [0, 50]},
                               {"type": "quantize"}]})


def test_single_output_model_trains_and_evaluates(tmp_path):
    # One stage x one scale: the model returns a tensor, not a list (the evaluator
    # once took its batch element for the image and crashed at the first eval).
    config = single_output_config(tmp_path)
    proc = run(train_cmd(config, tmp_path / "run"))
    assert_ok(proc)
    assert re.search(r"step 2: \w+ PSNR [0-9.]+ dB, SSIM [0-9.]+ over 2 images",
                     proc.stdout + proc.stderr), proc.stderr[-3000:]


def test_training_without_tensorboard_warns_and_still_logs(tmp_path):
    # TensorBoard comes with the `train` extra; a plain `pip install maxim-tf[cpu]` has
    # none, and tf.summary.scalar then raises TBNotInstalledError whatever the writer:
    # training once died at its first log step. Now it warns and keeps the JSONL log.
    config = single_output_config(tmp_path)
    blocked = ("import sys; sys.modules['tensorboard'] = None; "  # import tensorboard -> ImportError
               "from maxim_tf.cli import console_main; sys.argv = ['maxim-tf'] + sys.argv[1:]; "
               "console_main()")
    proc = run([sys.executable, "-c", blocked, *train_cmd(config, tmp_path / "run")[3:]])
    assert_ok(proc)
    out = proc.stdout + proc.stderr
    assert "TensorBoard is not installed" in out, out[-3000:]
    assert sorted(losses_by_step(tmp_path / "run")) == [1, 2]
    assert re.search(r"step 2: \w+ PSNR [0-9.]+ dB", out), out[-3000:]
    assert not list((tmp_path / "run").glob("tensorboard/*")), "no TensorBoard events expected"
    assert (tmp_path / "run" / "model.keras").is_file()


def test_jit_compile_follows_the_graph_trajectory(tmp_path):
    # `"jit_compile": true` once compiled the whole step, and every XLA run failed at its
    # first step: XLA has no kernel for the iterator's next() nor for the antialiased
    # resize of the multi-scale targets, and a compiled function nested in strategy.run
    # may not hold the clipping's all-reduce or the update (merge_call). Now only the
    # forward/loss/gradients are compiled. Two replicas, two scales, clipping on.
    # Tolerance: losses rtol 1e-3 (XLA fuses and reorders float32 sums).
    config = write_config(tmp_path, steps=3, augment={"mixup": 0.0},
                          optimizer={"clip_global_norm": 1.0})
    extra = ("--strategy", "mirrored", "--cpu-replicas", "2")
    graph = run(train_cmd(config, tmp_path / "graph", *extra))
    xla = run(train_cmd(config, tmp_path / "xla", *extra, "--set", "jit_compile=true"))
    assert_ok(graph)
    assert_ok(xla)
    a, b = losses_by_step(tmp_path / "graph"), losses_by_step(tmp_path / "xla")
    assert sorted(a) == sorted(b) == [1, 2, 3]
    np.testing.assert_allclose([b[k] for k in (1, 2, 3)], [a[k] for k in (1, 2, 3)], rtol=1e-3)
