import sys

from maxim_tf.cli import main

sys.exit(main())
