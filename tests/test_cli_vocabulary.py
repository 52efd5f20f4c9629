"""One CLI vocabulary: a flag means the same thing in every ``maxim-tf`` subcommand.

Reads the real parser (no TensorFlow): every long option has one destination, action,
type and set of choices wherever it appears; ``-q/--quiet`` and ``-v/--verbose`` are
in every subcommand; the old spellings stop with one line naming the new flag.
"""

import argparse

import pytest

from maxim_tf.cli import build_parser, main

# -o is "where the results go" everywhere: a file (export, convert) or a folder.
SAME_MEANING_DIFFERENT_DEST = {"-o"}


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _options(subparser):
    for action in subparser._actions:
        if action.help == argparse.SUPPRESS:  # a renamed spelling
            continue
        for option in action.option_strings:
            yield option, action


def test_every_flag_has_one_meaning():
    seen = {}
    for name, subparser in _subparsers().items():
        for option, action in _options(subparser):
            key = (action.dest, type(action).__name__, getattr(action.type, "__name__", None),
                   tuple(action.choices) if action.choices else None)
            seen.setdefault(option, {}).setdefault(key, []).append(name)
    clashes = {o: v for o, v in seen.items() if len(v) > 1 and o not in SAME_MEANING_DIFFERENT_DEST}
    assert not clashes, f"flags whose meaning changes between subcommands: {clashes}"


def test_quiet_and_verbose_everywhere():
    for name, subparser in _subparsers().items():
        options = dict(_options(subparser))
        for flag in ("-q", "--quiet", "-v", "--verbose"):
            assert flag in options, f"{name} lacks {flag}"
        assert options["-q"].dest == "quiet" and options["-v"].dest == "verbose"


@pytest.mark.parametrize("argv,new", [
    (["restore", "x.png", "-o", "o", "--quality", "90"], "--jpeg-quality"),
    (["restore", "x.png", "-o", "o", "--format", "png"], "--image-format"),
    (["restore", "x.png", "-o", "o", "--batch-size", "2"], "--tile-batch"),
    (["export", "m.keras", "-f", "tflite"], "--to"),
    (["export", "m.keras", "--to", "tflite", "--quantization", "int8"], "--quantize"),
    (["export", "m.keras", "--to", "savedmodel", "--version", "3"], "--model-version"),
    (["benchmark", "--quality"], "--measure quality"),
    (["train", "--config", "denoise", "--no-progress"], "-q/--quiet"),
    (["convert", "c.npz", "-o", "m.keras", "--config", "c.json"], "--model-config"),
])
def test_renamed_flags_name_the_new_spelling(argv, new, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"maxim-tf {argv[0]}: error: ") and f"use {new}" in err


def test_quiet_before_the_subcommand_counts(monkeypatch):
    seen = {}
    import maxim_tf.commands.models as models

    # register() binds func=run when main builds the parser, after this patch.
    monkeypatch.setattr(models, "run", lambda args: seen.setdefault("quiet", args.quiet) and 0)
    assert main(["-q", "models"]) == 0
    assert seen == {"quiet": True}
