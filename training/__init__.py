"""MAXIM training on tf.distribute: the paper's loss and schedule, tf.data/TFDS inputs.

Modules: ``losses`` (Charbonnier + frequency loss over every stage and scale),
``degrade`` (synthetic noise/blur/JPEG), ``data`` (tf.data pipelines),
``tfds_paired`` (offline TFDS builder for input/target folders), ``config``
(JSON configs in ``configs/``) and ``trainer`` (:func:`trainer.train`, used by
``maxim-tf train``).
"""
