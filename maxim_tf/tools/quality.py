"""Restoration quality benchmark: PSNR/SSIM of our models against the degraded input and BM3D.

``maxim-tf benchmark --measure quality --images FOLDER`` runs, on every clean image
of ``FOLDER`` (centre-cropped to ``crop`` x ``crop``):

* denoising at sigma = 15, 25, 50 (8-bit levels): colour Gaussian noise added,
  then clipped to [0, 255] and quantised to 8 bits, as users' noisy files are.
  Columns: the noisy input, BM3D (PyPI ``bm3d``, optional; told the true
  sigma, so it is *not* blind, unlike our model) and our model;
* deblurring: Gaussian blur sigma = 1, 2, 3 and defocus (antialiased disk)
  radius = 2, 4 pixels, then 8-bit quantisation. Columns: the blurred input,
  Wiener deconvolution told the true kernel (:func:`wiener_deconvolve`; a
  classical non-blind baseline, unlike our blind model) and our model.

The degradations are those of the training pipeline
(:mod:`maxim_tf.training.degrade`) with fixed seeds, so every run scores the
same inputs. Outputs are scored as users get them (clipped, rounded to 8 bits)
with :mod:`maxim_tf.metrics` (RGB, no border crop). Extra TFLite files (e.g.
the int8 export) can be scored next to the Keras model. Seconds per image are
the mean wall time of one call after a warm-up call (BM3D: every call).

Writes ``quality.json``, ``quality.md`` (Markdown tables) and ``quality.png``
(a crop: clean | degraded | BM3D | ours).
"""

import json
import pathlib
import time

import numpy as np

from maxim_tf import fileio, image_io, metrics

DENOISE_SIGMAS = (15, 25, 50)
DEBLUR_CASES = (("gaussian", 1.0), ("gaussian", 2.0), ("gaussian", 3.0),
                ("disk", 2.0), ("disk", 4.0))


def load_clean_images(folder, crop=512):
    """``[(name, uint8 HxWx3)]`` for the images in ``folder``, centre-cropped to ``crop``."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Image folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in image_io.IMAGE_EXTENSIONS)
    if not paths:
        raise ValueError(f"No images ({', '.join(image_io.IMAGE_EXTENSIONS)}) in {folder}")
    out = []
    for path in paths:
        pixels = image_io.to_uint8(image_io.rgb_float(image_io.read_image(path)))
        if crop:
            h, w = pixels.shape[:2]
            ch, cw = min(crop, h), min(crop, w)
            y, x = (h - ch) // 2, (w - cw) // 2
            pixels = pixels[y:y + ch, x:x + cw]
        out.append((path.stem, np.ascontiguousarray(pixels)))
    return out


def degradation_specs(task, level):
    """Degradation specs (training-pipeline format) of one benchmark case."""
    if task == "denoise":
        first = {"type": "gaussian_noise", "sigma": [level, level]}
    elif task == "gaussian":
        first = {"type": "gaussian_blur", "sigma": [level, level]}
    elif task == "disk":
        first = {"type": "defocus_blur", "radius": [level, level]}
    else:
        raise ValueError(f"Unknown benchmark degradation {task!r}")
    return [first, {"type": "quantize"}]


def degrade_uint8(clean, specs, seed):
    """Degrade a uint8 image with the training pipeline's ops; returns uint8."""
    import tensorflow as tf

    from maxim_tf.training import degrade as degrade_lib

    x = tf.constant(clean, tf.float32) / 255.0
    y = degrade_lib.degrade(x, degrade_lib.validate(specs), tf.constant([seed, 1], tf.int64))
    return image_io.to_uint8(y.numpy())


class _Method:
    """A restoration method: name, callable uint8 -> uint8, warm-up flag."""

    def __init__(self, name, fn, warmup):
        self.name, self.fn, self.warmup = name, fn, warmup
        self.warm_shapes = set()

    def __call__(self, image):
        if self.warmup and image.shape not in self.warm_shapes:
            self.fn(image)
            self.warm_shapes.add(image.shape)
        start = time.perf_counter()
        out = self.fn(image)
        return out, time.perf_counter() - start


def keras_method(name, model):
    from maxim_tf.restore import Restorer

    restorer = Restorer(model)
    return _Method(name, restorer, warmup=True)


def tflite_method(name, path):
    from maxim_tf.litert import TFLiteRunner

    runner = TFLiteRunner(path)
    return _Method(name, lambda img: image_io.to_uint8(runner(img[None].astype(np.float32) / 255.0)[0]),
                   warmup=True)


# Regularisation of the Wiener deconvolution baseline, relative to the kernel's
# spectrum: the blurred test images carry only 8-bit quantisation noise.
WIENER_BALANCE = 2e-3


def wiener_deconvolve(image, kernel, balance=WIENER_BALANCE):
    """Non-blind Wiener deconvolution of a uint8 HxWx3 image blurred by ``kernel`` (the
    true 2-D kernel, odd side), in float on [0, 1]: ``conj(K) Y / (|K|² + balance)``
    per channel, the image reflect-padded by 3 kernel radii to keep the FFT's wrap-around
    away from its borders. Returns uint8."""
    kernel = np.asarray(kernel, np.float64)
    r = kernel.shape[0] // 2
    pad = 3 * r + 8
    y = np.pad(image.astype(np.float64) / 255.0, [(pad, pad), (pad, pad), (0, 0)], mode="reflect")
    otf = np.zeros(y.shape[:2])
    otf[:kernel.shape[0], :kernel.shape[1]] = kernel
    otf = np.fft.rfft2(np.roll(otf, (-r, -r), axis=(0, 1)))  # kernel centre at the origin
    gain = np.conj(otf) / (np.abs(otf) ** 2 + balance)
    out = np.stack([np.fft.irfft2(np.fft.rfft2(y[..., c]) * gain, s=y.shape[:2])
                    for c in range(y.shape[2])], axis=-1)
    return image_io.to_uint8(np.clip(out[pad:-pad, pad:-pad], 0.0, 1.0).astype(np.float32))


def wiener_method(kind, level):
    """Wiener deconvolution told the true blur kernel of the case (a classical
    non-blind baseline; ours is blind)."""
    import tensorflow as tf

    from maxim_tf.training import degrade as degrade_lib

    spec = degrade_lib.validate(degradation_specs(kind, level))[0]
    kernel = degrade_lib.blur_kernel(spec, tf.constant([0, 1], tf.int64)).numpy()
    return _Method("Wiener", lambda img: wiener_deconvolve(img, kernel), warmup=False)


def bm3d_method(sigma):
    import bm3d

    return _Method("BM3D", lambda img: image_io.to_uint8(bm3d.bm3d_rgb(img / 255.0, sigma / 255.0)),
                   warmup=False)


def have_bm3d():
    try:
        import bm3d  # noqa: F401
    except ImportError:
        return False
    return True


def _score(clean, out):
    return metrics.psnr(clean, out), metrics.ssim(clean, out)


def _cases(tasks):
    cases = []
    if "denoise" in tasks:
        cases += [("denoise", "denoise", float(s)) for s in DENOISE_SIGMAS]
    if "deblur" in tasks:
        cases += [("deblur", kind, level) for kind, level in DEBLUR_CASES]
    return cases


def case_label(kind, level):
    if kind == "denoise":
        return f"σ = {level:g}"
    return f"Gaussian σ = {level:g}" if kind == "gaussian" else f"disk r = {level:g}"


def run_quality(images, output_dir, *, denoise=None, deblur=None, extra=None, crop=512,
                use_bm3d=True, seed=0, progress=True):
    """Run the quality benchmark and write quality.json/.md/.png to ``output_dir``.

    Args:
        images: folder of clean images.
        denoise, deblur: model names/paths (or Keras models) for each task; a
            task without a model is skipped.
        extra: ``{"denoise": [tflite paths], "deblur": [...]}`` scored too.
        crop: centre crop side (0 = whole images).
        use_bm3d: include BM3D in the denoising table (needs ``pip install bm3d``).
        seed: degradation seed (image i of a case uses ``seed + i``).

    Returns:
        The results dict (as written to quality.json).
    """
    from maxim_tf.hub import load_model

    if use_bm3d and denoise is not None and not have_bm3d():
        raise RuntimeError("BM3D is not installed: `pip install bm3d` (an optional comparison "
                           "dependency), or pass --no-bm3d.")
    clean = load_clean_images(images, crop)
    extra = extra or {}
    methods = {}
    tasks = []
    for task, model in (("denoise", denoise), ("deblur", deblur)):
        if model is None:
            continue
        tasks.append(task)
        label = (pathlib.Path(str(model)).name if isinstance(model, (str, pathlib.Path))
                 else getattr(model, "name", task))
        methods[task] = [keras_method("ours", load_model(model) if isinstance(
            model, (str, pathlib.Path)) else model)]
        methods[task][0].source = str(label)
        for path in extra.get(task, ()):
            methods[task].append(tflite_method(f"ours ({pathlib.Path(path).name})", path))
    if not tasks:
        raise ValueError("Nothing to benchmark: give a denoise and/or a deblur model.")

    cases = _cases(tasks)
    rows = []
    figure = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cases) * len(clean), desc="quality", unit="img")
    for task, kind, level in cases:
        specs = degradation_specs(kind, level)
        case_methods = list(methods[task])
        if task == "denoise" and use_bm3d:
            case_methods.insert(0, bm3d_method(level))
        if task == "deblur":
            case_methods.insert(0, wiener_method(kind, level))
        for i, (name, img) in enumerate(clean):
            degraded = degrade_uint8(img, specs, seed + i)
            row = {"task": task, "case": case_label(kind, level), "kind": kind,
                   "level": level, "image": name, "size": list(img.shape[:2]),
                   "results": {"input": dict(zip(("psnr", "ssim"), _score(img, degraded)))}}
            outputs = {}
            for m in case_methods:
                out, seconds = m(degraded)
                psnr, ssim = _score(img, out)
                row["results"][m.name] = {"psnr": psnr, "ssim": ssim, "seconds": seconds}
                outputs[m.name] = out
            rows.append(row)
            if (kind, level) in (("denoise", 25.0), ("gaussian", 2.0)):
                figure.setdefault(task, []).append((row["case"], img, degraded, outputs))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()

    results = {"images": str(images), "crop": crop, "seed": seed,
               "num_images": len(clean), "image_names": [n for n, _ in clean],
               "models": {t: methods[t][0].source for t in tasks},
               "rows": rows, "summary": summarize(rows)}
    out_dir = pathlib.Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fileio.atomic_write_bytes(out_dir / "quality.json",
                              (json.dumps(results, indent=1) + "\n").encode())
    fileio.atomic_write_bytes(out_dir / "quality.md", markdown(results).encode())
    if figure:
        plot_figure(figure, out_dir / "quality.png")
    return results


def summarize(rows):
    """Mean PSNR/SSIM/seconds per (task, case, method), in case order."""
    summary = {}
    for row in rows:
        key = f"{row['task']}|{row['case']}"
        entry = summary.setdefault(key, {"task": row["task"], "case": row["case"], "methods": {}})
        for method, r in row["results"].items():
            agg = entry["methods"].setdefault(method, {"psnr": [], "ssim": [], "seconds": []})
            for k in ("psnr", "ssim", "seconds"):
                if k in r:
                    agg[k].append(r[k])
    for entry in summary.values():
        for method, agg in entry["methods"].items():
            entry["methods"][method] = {k: float(np.mean(v)) for k, v in agg.items() if v}
    return list(summary.values())


def markdown(results):
    """Markdown tables (one per task) from a results dict."""
    n, crop = results["num_images"], results["crop"]
    size = f"{crop}×{crop} centre crops" if crop else "whole images"
    lines = []
    titles = {"denoise": "Denoising — colour Gaussian noise, clipped and quantised to 8 bits",
              "deblur": "Deblurring — Gaussian / defocus (disk) blur, quantised to 8 bits"}
    for task in ("denoise", "deblur"):
        entries = [e for e in results["summary"] if e["task"] == task]
        if not entries:
            continue
        methods = list(entries[0]["methods"])
        names = {"input": "noisy input" if task == "denoise" else "blurred input",
                 "BM3D": "BM3D (σ given)", "Wiener": "Wiener (kernel given)"}
        lines += [f"### {titles[task]}", "",
                  f"Model `{results['models'][task]}`; {n} hold-out photos ({size}), "
                  f"PSNR (dB) / SSIM, RGB, mean over images; seconds per image on this machine.",
                  "",
                  "| case | " + " | ".join(names.get(m, m) for m in methods) + " |",
                  "|---|" + "---|" * len(methods)]
        for e in entries:
            cells = [f"{e['methods'][m]['psnr']:.2f} / {e['methods'][m]['ssim']:.4f}"
                     for m in methods]
            lines.append(f"| {e['case']} | " + " | ".join(cells) + " |")
        secs = []
        for m in methods:
            vals = [e["methods"][m]["seconds"] for e in entries if "seconds" in e["methods"][m]]
            secs.append(f"{np.mean(vals):.2f} s" if vals else "—")
        lines.append("| s / image | " + " | ".join(secs) + " |")
        for m in methods:
            if m.startswith("ours (") and "ours" in methods:
                d = [e["methods"][m]["psnr"] - e["methods"]["ours"]["psnr"] for e in entries]
                lines += ["", f"`{m[6:-1]}`: PSNR {np.mean(d):+.2f} dB vs the Keras model on "
                              f"average (worst case {min(d):+.2f} dB)."]
        if "BM3D" in methods and "ours" in methods:
            b = np.mean([e["methods"]["BM3D"]["seconds"] for e in entries])
            o = np.mean([e["methods"]["ours"]["seconds"] for e in entries])
            lines += ["", f"Ours is {b / o:.1f}× faster than BM3D per image."]
        lines.append("")
    return "\n".join(lines) + "\n"


def plot_figure(figure, path):
    """Save crops clean | degraded | (BM3D) | ours for each task to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [figure[t] for t in ("denoise", "deblur") if t in figure]
    cols = max(2 + len(r[0][3]) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(3 * cols, 3.6 * len(rows)), squeeze=False)
    for r, candidates in enumerate(rows):
        # Show the most detailed window of the most detailed image (sky shows nothing).
        size = min(min(c[1].shape[:2]) for c in candidates)
        s = min(192, size)
        case, clean, degraded, outputs = max(candidates, key=lambda c: _detail(c[1], s)[0])
        _, (y, x) = _detail(clean, s)
        panels = [("clean", clean), (f"degraded ({case})", degraded)] + list(outputs.items())
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(panels):
                title, img = panels[c]
                if c > 0:
                    title += f"\n{metrics.psnr(clean, img):.2f} dB"
                ax.imshow(img[y:y + s, x:x + s], interpolation="nearest")
                ax.set_title(title, fontsize=9)
    fig.tight_layout(h_pad=2.0)
    with fileio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _detail(image, s, stride=32):
    """(gradient energy, (y, x)) of the ``s``-square window of ``image`` with the most detail."""
    g = image.astype(np.float64).mean(axis=-1)
    energy = np.zeros_like(g)
    energy[:, 1:] += np.abs(np.diff(g, axis=1))
    energy[1:, :] += np.abs(np.diff(g, axis=0))
    h, w = g.shape
    best = (-1.0, (0, 0))
    for y in range(0, h - s + 1, stride):
        for x in range(0, w - s + 1, stride):
            best = max(best, (float(energy[y:y + s, x:x + s].sum()), (y, x)))
    return best
