"""envmon shared kernel: models, site configuration, settings, CLI and the bus port."""

__version__ = "0.1.0"
