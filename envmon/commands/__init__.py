"""Implementations of the ``envmon`` CLI sub-commands (imported lazily by ``envmon.cli``)."""
