"""Subcommands of ``maxim-tf``; one module each (see maxim_tf/cli.py)."""
