"""Export MAXIM for deployment: TF Serving SavedModel, TFLite (LiteRT), ONNX.

One entry point, :func:`export_model`, used by ``maxim-tf export``::

    >>> from maxim_tf.export import export_model
    >>> export_model("maxim_s2_dehaze.keras", "serving", format="savedmodel")
    >>> export_model(model, "maxim_int8.tflite", format="tflite", quantization="int8",
    ...              verify=True)

Every artifact takes float32 ``[N, H, W, 3]`` images in [0, 1] of any H, W
(the model's size-multiple padding and the crop back are inside the graph)
and returns the restored image of the same size.
"""

import pathlib

FORMATS = ("savedmodel", "tflite", "onnx")


def export_model(model, output, format, verify=False, **options):  # noqa: A002
    """Export a Keras MAXIM (object or ``.keras`` path) to ``format``.

    Args:
        model: a ``maxim_tf.MAXIM`` or the path of a ``.keras`` file.
        output: for "savedmodel" the base directory (the model is written to
            ``<output>/<name>/<version>/``); for "tflite" / "onnx" the file.
        format: "savedmodel", "tflite" or "onnx".
        verify: after writing, run the artifact in its runtime against the
            Keras model (see :mod:`maxim_tf.export.verify`); raises
            ``VerificationError`` if it disagrees.
        **options: ``overwrite`` (every format): replace an existing output file or
            SavedModel version (default: refuse it with ``FileExistsError`` before any
            work); the rest is passed to
            :func:`~maxim_tf.export.savedmodel.export_savedmodel`
            (name, version, max_pixels, warmup),
            :func:`~maxim_tf.export.tflite.export_tflite` (quantization,
            input_size, batch_size, representative_data, num_calibration_images,
            int8_io) or :func:`~maxim_tf.export.onnx.export_onnx` (opset).

    Returns:
        ``(path, checks)``: the written directory or file and the list of
        verification checks (empty without ``verify``).
    """
    from maxim_tf.hub import load_model

    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}. Choose one of {', '.join(FORMATS)}.")
    check_dependencies(format, verify)
    if format != "savedmodel":  # export_savedmodel checks its version folder itself
        check_new_output(output, options.pop("overwrite", False))
    model = load_model(model, require_maxim=True)
    if format == "savedmodel":
        from maxim_tf.export.savedmodel import export_savedmodel

        path = export_savedmodel(model, output, **options)
    elif format == "tflite":
        from maxim_tf.export.tflite import export_tflite

        path = export_tflite(model, output, **options)
    else:
        from maxim_tf.export.onnx import export_onnx

        path = export_onnx(model, output, **options)
    checks = []
    if verify:
        from maxim_tf.export.verify import verify_export

        checks = verify_export(model, format, path, quantization=options.get("quantization"))
    return pathlib.Path(path), checks


def check_new_output(output, overwrite=False):
    """Refuse an existing TFLite/ONNX output file unless ``overwrite`` (before any work).

    Raises:
        FileExistsError: naming the file and ``--overwrite`` (``maxim-tf export``: exit 2).
        IsADirectoryError: ``output`` is a folder.
    """
    path = pathlib.Path(output)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; pass the file to write")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass --overwrite (overwrite=True) to "
                              f"replace it")


# format -> (modules the export needs, modules --verify needs); all in the [export] extra.
_NEEDS = {
    "savedmodel": ((), ()),
    "tflite": ((), ("ai_edge_litert.interpreter",)),
    "onnx": (("tf2onnx", "onnx"), ("onnxruntime",)),
}


def check_dependencies(format, verify=False):  # noqa: A002
    """Fail at once, naming the extra, if an optional package the export needs is missing.

    Raises:
        maxim_tf.errors.MissingDependencyError: ``pip install "maxim-tf[export]"``.
    """
    from maxim_tf.errors import require

    export_needs, verify_needs = _NEEDS[format]
    for module in export_needs + (verify_needs if verify else ()):
        require(module, "export", f"{format} export" + (" with --verify" if verify else ""))


__all__ = ["FORMATS", "check_dependencies", "check_new_output", "export_model"]
