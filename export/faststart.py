"""The fast-start twin of a ``.keras`` model: its fp32 LiteRT file, built once and verified.

An official-size MAXIM (S-2: 14 M parameters, ~2 000 Keras layers) costs tens of seconds
before its first image with Keras: loading the ``.keras`` file, tracing the graph and the
TF runtime's preparation of a ~26 000-op function. LiteRT loads the same network from a
``.tflite`` file in well under a second and needs no tracing. :func:`build_twin` exports
that file once (dynamic size, fp32, builtin ops), runs it in LiteRT against the Keras
model on three inputs (odd sizes, a batch of two) and records the result in a
``manifest.json`` beside it, under ``<cache>/faststart/<sha256 of the .keras file>/``.
:class:`maxim_tf.Restorer` (and ``maxim-tf restore --backend auto``) then runs the
``.keras`` file on its twin, exactly as it runs the shipped models on theirs
(:func:`maxim_tf.litert.faststart_tflite` finds and checks it). A ``.keras`` file that
changes has another sha256: its old twin is never used.
"""

import json
import pathlib
import shutil
import tempfile
import time

from maxim_tf import fileio, litert
from maxim_tf.errors import CheckFailedError

# Three inputs, as the shipped twins are checked: two single images whose sizes need
# padding, and a batch of two.
CHECK_SIZES = ((77, 131, 1), (40, 56, 2), (128, 96, 1))


def build_twin(keras_path, model=None, say=print):
    """Build (or find) the verified fast-start twin of ``keras_path``.

    Args:
        keras_path: the ``.keras`` file.
        model: the already loaded Keras model of that file (loaded here if None).
        say: called with one line per phase (``print``, or a no-op for quiet runs).

    Returns:
        ``(tflite_path, max_abs_diff)``; ``max_abs_diff`` is None when a verified twin
        already existed.

    Raises:
        CheckFailedError: the twin disagrees with the Keras model by more than
            :data:`maxim_tf.litert.FASTSTART_TOLERANCE` (nothing is kept).
    """
    keras_path = pathlib.Path(keras_path)
    digest = litert.file_digest(keras_path)
    found = litert.faststart_tflite(keras_path, digest=digest)
    if found is not None:
        return found[0], None
    if model is None:
        from maxim_tf.modelfile import load_keras_model

        say(f"fast start: loading {keras_path.name}")
        model = load_keras_model(keras_path, require_maxim=True)
    from maxim_tf.hub import in_cache

    folder = litert.faststart_folder(digest)
    in_cache(folder.parent, "create").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # Built in a temporary folder beside the final one and moved in whole, so that an
    # interrupted build never leaves a folder that looks finished.
    with tempfile.TemporaryDirectory(prefix=f".{folder.name}.tmp_", dir=folder.parent) as tmp:
        tmp = pathlib.Path(tmp)
        tflite = tmp / litert.FASTSTART_FILE
        say(f"fast start: exporting {keras_path.name} to an fp32 LiteRT file (once; "
            f"official-size models take a few minutes)")
        from maxim_tf.export.tflite import export_tflite

        export_tflite(model, tflite, quantization="fp32")
        say(f"fast start: checking it against Keras on {len(CHECK_SIZES)} inputs")
        diff, scale = _max_difference(model, tflite)
        # Outputs of restoration models lie in about [0, 1]; an untrained model's can be
        # far larger, and float32 rounding grows with them.
        tolerance = litert.FASTSTART_TOLERANCE * max(1.0, scale)
        if not diff <= tolerance:
            raise CheckFailedError(
                f"{keras_path}: its LiteRT twin differs from the Keras model by {diff:.3g} "
                f"(> {tolerance:.3g}); not used. Run it with --backend keras.")
        manifest = {"tflite": {litert.FASTSTART_FILE: {
            "source": keras_path.name, "source_sha256": digest,
            "sha256": fileio.sha256_file(tflite), "size_multiple": list(model.size_multiple),
            "max_abs_diff": diff, "output_scale": scale, "tolerance": tolerance,
            "checked_on": [[n, h, w, 3] for h, w, n in CHECK_SIZES]}}}
        (tmp / litert.MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        if folder.exists():  # an unverified or stale leftover of the same file
            shutil.rmtree(in_cache(folder, "remove"))
        tmp.rename(folder)
        tmp.mkdir()  # for TemporaryDirectory's clean-up
    say(f"fast start: ready in {time.perf_counter() - start:.0f} s (max |LiteRT - Keras| "
        f"{diff:.2g}): later runs of this file start in about a second")
    return folder / litert.FASTSTART_FILE, diff


def _max_difference(model, tflite):
    import numpy as np

    from maxim_tf.export.verify import keras_reference, sample_images

    """Max |LiteRT - Keras| over :data:`CHECK_SIZES`, and the largest |Keras output|."""
    runner = litert.TFLiteRunner(tflite)
    diff = scale = 0.0
    for h, w, n in CHECK_SIZES:
        (images,) = sample_images([(h, w)], batch=n)
        reference = keras_reference(model, images)
        diff = max(diff, float(np.max(np.abs(runner(images) - reference))))
        scale = max(scale, float(np.max(np.abs(reference))))
    return diff, scale
