"""The trend chart: ``model`` (windows, the ``Trend``), ``layout`` (marks), ``svg`` and ``pdf``."""
