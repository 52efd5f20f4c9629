"""``maxim-tf train`` in this process, with test hooks (not collected by pytest).

Usage::

    python tests/train_hooked.py [--nan-at-step N] [--step-delay SECONDS]
                                 [--dump-weights PREFIX] TRAIN_ARGS...

runs ``maxim-tf train TRAIN_ARGS`` (same parsing, messages and exit status) with a
:class:`maxim_tf.training.trainer.TrainHooks` that

* ``--nan-at-step N``: makes the loss of step N NaN (a divergence);
* ``--step-delay S``: sleeps S seconds after each step (so a kill lands mid-run);
* ``--dump-weights PREFIX``: writes every worker's final weights to
  ``PREFIX.<worker>.npz`` (``chief``, or ``worker_0``, ``worker_1``, ...).

The training runs need their own process (logical devices, ``TF_CONFIG`` and op
determinism are process-wide), hence a script rather than a fixture.
"""

import argparse
import functools
import sys
import time


def make_hooks(nan_at_step=None, step_delay=0.0, dump_weights=None):
    """The :class:`TrainHooks` for the options above."""
    import numpy as np

    from maxim_tf.training import trainer

    class TestHooks(trainer.TrainHooks):
        """Divergence, slow-down and weight dump on demand."""

        def on_step(self, session, step, loss):
            """NaN at ``nan_at_step``; sleep ``step_delay`` after every step."""
            if step_delay:
                time.sleep(step_delay)
            return float("nan") if step == nan_at_step else loss

        def on_end(self, session):
            """Dump the final weights of this worker."""
            if dump_weights:
                np.savez(f"{dump_weights}.{session.worker_id}.npz",
                         **{f"{i:04d}": v.numpy() for i, v in enumerate(session.model.weights)})

    return TestHooks()


def main(argv=None):
    """Parse the hook options, then run the train command with the rest of ``argv``."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--nan-at-step", type=int)
    parser.add_argument("--step-delay", type=float, default=0.0)
    parser.add_argument("--dump-weights")
    opts, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)

    from maxim_tf import cli
    from maxim_tf.commands import train as train_command

    cli.configure_logging(verbose=False)  # as the console command does
    args = cli.build_parser().parse_args(["train", *rest])
    hooks = make_hooks(opts.nan_at_step, opts.step_delay, opts.dump_weights)
    args.func = functools.partial(train_command.run, hooks=hooks)
    return cli.run_parsed(args)  # the console command's messages and exit codes


if __name__ == "__main__":
    sys.exit(main())
