"""The pure evaluation core: readings in, alarm events, excursion records and data gaps out.

No I/O and no wall clock: time is whatever the readings (or an explicit ``advance``) say.
Every bus engine (replay, the embedded runner, the faust app) drives this same code.
"""

from stream.core.evaluator import ChannelEvaluator, EvaluationStats, Evaluator, Pending
from stream.core.state import SensorState, SideState

__all__ = [
    "ChannelEvaluator",
    "EvaluationStats",
    "Evaluator",
    "Pending",
    "SensorState",
    "SideState",
]
