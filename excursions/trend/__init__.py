"""The trend chart: ``model`` (windows, the ``Trend``, marks), ``svg`` and ``pdf`` renderers."""
