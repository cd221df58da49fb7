"""CLI subcommands contributed per area; each module exposes
``add_commands(sub, train_sub, eval_sub)`` and imports heavy modules only when run."""
