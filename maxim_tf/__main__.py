"""``python -m maxim_tf``: the same as the ``maxim-tf`` command."""

import sys

from maxim_tf.cli import console_main

sys.exit(console_main())
