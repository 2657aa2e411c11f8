"""Subcommands: each module has register(sub) and run(args)."""
