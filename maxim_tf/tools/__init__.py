"""Tools built on top of maxim_tf: the speed benchmark and the quality benchmark.

Not core: a tool may import anything (``maxim_tf.export``, ``maxim_tf.training``,
optional packages), while the core modules of ``maxim_tf/`` import no tool, no
exporter and no training code (``tests/test_layering.py`` checks it). Run by
``maxim-tf benchmark`` (speed) and ``maxim-tf benchmark --measure quality``.
"""
