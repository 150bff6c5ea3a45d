"""How the long-running commands log: one line format, libraries held to what operators need.

``service_logging`` is called once by ``envmon collect``, ``envmon excursions consume`` and
``envmon alerts run``: envmon's own lines at INFO, and the protocol libraries only from
WARNING, so a connection's routine steps (asyncua's "opening connection", "create_subscription
success", amqtt's session messages) do not bury envmon's own account of it.
"""

from __future__ import annotations

import logging
from typing import Final

FORMAT: Final = "%(asctime)s %(levelname)s %(message)s"
#: Loggers of libraries that narrate routine steps at INFO; envmon logs what matters itself.
QUIET_LIBRARIES: Final = ("asyncua", "amqtt", "transitions")


def service_logging(level: int = logging.INFO) -> None:
    """Log to stderr in one format at ``level``; the chatty libraries from WARNING on."""
    logging.basicConfig(level=level, format=FORMAT)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
