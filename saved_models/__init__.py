"""Trained MAXIM models shipped with maxim_tf (``denoise.keras``, ``deblur.keras``).

Each has a model card (``<name>.md``). ``maxim-tf restore`` and
``maxim_tf.Restorer`` find them by name; this file makes the folder installable
as ``maxim_tf.saved_models``.
"""
