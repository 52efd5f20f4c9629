"""Time the official JAX/Flax MAXIM (google-research/maxim) on this CPU.

    PYTHON_WITH_JAX benchmarks/official_speed.py MAXIM_CHECKOUT [--variant S-3]
        [--sizes 256 512 1024] [--repeats 3]

Not a dependency of maxim_tf: run it with an interpreter that has ``jax``, ``flax``
and ``einops`` (e.g. ``python -m venv jaxenv && jaxenv/bin/pip install jax flax
einops``) and a checkout of https://github.com/google-research/maxim (its
``maxim/models/maxim.py`` is imported from there, nothing of it is copied here).
Random weights (``Model(variant=...).init``), batch 1, ``jax.jit`` of ``apply``
(compiled per size, compile time excluded: one warm-up call per size), min of
``--repeats`` calls with ``block_until_ready``. Prints one JSON line
``{"jax": version, "variant": ..., "times": {size: [seconds, ...]}}``;
``benchmarks/speed_report.py --official-python ... --official-code ...`` runs it
in the same run as our own measurements.
"""

import argparse
import importlib.util
import json
import pathlib
import time


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkout", help="a checkout of google-research/maxim")
    p.add_argument("--variant", default="S-3")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    import jax
    import jax.numpy as jnp

    path = pathlib.Path(args.checkout) / "maxim" / "models" / "maxim.py"
    spec = importlib.util.spec_from_file_location("official_maxim", path)
    official = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(official)
    model = official.Model(variant=args.variant)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 256, 256, 3), jnp.float32),
                        train=False)
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    times = {}
    for size in args.sizes:
        x = jax.random.uniform(jax.random.PRNGKey(1), (1, size, size, 3), jnp.float32)
        jax.block_until_ready(apply(params, x))
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            jax.block_until_ready(apply(params, x))
            runs.append(time.perf_counter() - start)
        times[size] = runs
    print(json.dumps({"jax": jax.__version__, "variant": args.variant, "times": times}))


if __name__ == "__main__":
    main()
