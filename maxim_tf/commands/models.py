"""``maxim-tf models``: the pretrained models (shipped and official presets) and their cache."""

from maxim_tf import errors
from maxim_tf.commands._common import usage_error

DESCRIPTION = """\
List the named models: the two shipped with maxim-tf (denoise, deblur) and the
official released MAXIM checkpoints (google-research/maxim, Apache-2.0). Any name
works as --model in restore/eval, as the model of export, and as
maxim_tf.MAXIM.from_preset(name) / maxim_tf.Restorer(name); an official preset is
downloaded from $MAXIM_TF_OFFICIAL_URL (default the public bucket
https://storage.googleapis.com/gresearch/maxim/ckpt), checked, converted once and
cached in $MAXIM_TF_HOME (default ~/.cache/maxim_tf). PSNR is the official
reported number on the benchmark of the training dataset."""


def register(subparsers):
    """Add the ``models`` subcommand."""
    p = subparsers.add_parser("models", help="list pretrained models; download or clear the cache",
                              description=DESCRIPTION)
    p.add_argument("--download", nargs="+", metavar="NAME", default=[],
                   help="download, check and convert these presets now")
    p.add_argument("--clear", nargs="+", metavar="NAME", default=[],
                   help="remove these presets from the cache ('all' for every one)")
    p.add_argument("--prepare", nargs="+", metavar="NAME_OR_PATH", default=[],
                   help="build the verified fp32 LiteRT twin of these presets or .keras files "
                        "now (restore then starts them in about a second); presets get it with "
                        "their download unless MAXIM_TF_FASTSTART=0")
    p.set_defaults(func=run)


def format_table(presets, statuses):
    """The models table as text (one line per preset)."""
    header = ("name", "task", "dataset", "variant", "params", "PSNR", "SSIM", "status")
    rows = [header]
    for p in presets:
        rows.append((p.name, p.task, p.dataset.split(" (")[0], p.variant or "custom",
                     f"{p.params / 1e6:.1f}M" if p.params else "-",
                     f"{p.psnr:.2f}" if p.psnr is not None else "-",
                     f"{p.ssim:.3f}" if p.ssim is not None else "-",
                     statuses[p.name]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def run(args):
    """Entry point of ``maxim-tf models``; returns the exit status."""
    from maxim_tf import hub, presets

    every = presets.all_presets()
    names = list(every) if "all" in args.clear else args.clear
    for name in names + args.download:
        if name not in every:
            raise errors.UsageError(f"unknown preset {name!r}; choose one of {', '.join(every)}")
    for name in names:
        if every[name].shipped:
            if name in args.clear:
                print(f"{name}: shipped with maxim-tf, nothing to clear")
            continue
        print(f"{name}: {'removed from the cache' if hub.clear(name) else 'not cached'}")
    for name in args.download:
        if not every[name].path:
            print(f"{name}: shipped with maxim-tf, nothing to download")
            continue
        try:
            path = hub.fetch_preset(every[name], progress=not args.quiet,
                                    faststart=False if args.prepare else None)
        except (OSError, ValueError) as e:
            raise usage_error(e) from e
        print(f"{name}: {path}")
    for name in args.prepare:
        _fast_start(name, every, quiet=args.quiet)
    if names or args.download or args.prepare:
        return 0
    statuses = {n: hub.status(p) for n, p in every.items()}
    print(format_table(every.values(), statuses))
    print(f"\nCache: {hub.cache_dir()}  Source: {hub.base_url()}/<Task>/<Dataset>/checkpoint.npz")
    return 0


def _fast_start(name, every, quiet):
    """Build the fast-start twin of a preset (downloaded first if needed) or a .keras file."""
    from maxim_tf import hub
    from maxim_tf.export.faststart import build_twin

    preset = every.get(name)
    try:
        if preset is not None and preset.path:
            path = hub.fetch_preset(preset, progress=not quiet, faststart=False)
        else:
            path = hub.resolve_model(name, progress=not quiet, faststart=False)
    except (OSError, ValueError) as e:
        raise usage_error(e) from e
    tflite, _ = build_twin(path, say=(lambda line: None) if quiet else print)
    print(f"{name}: fast start {tflite}")
