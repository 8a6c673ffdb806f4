"""The offline build pipeline: one module per stage, driven by `anime-build` (see cli.py)."""
