"""CLI subcommands: one settings model each (its options, from ``options.py``) with ``run() ->
int``; ``demo.py`` is the edge that turns the demo world's names into explicit values."""
