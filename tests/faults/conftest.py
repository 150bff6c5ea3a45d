"""Fixtures of the fault matrix: the shared real servers of the integration tests."""

from tests.integration.conftest import postgres  # noqa: F401 - fixture
from tests.integration.influxdb.conftest import influxdb  # noqa: F401 - fixture
from tests.integration.kafka.conftest import kafka  # noqa: F401 - fixture
from tests.integration.mqtt.conftest import mosquitto  # noqa: F401 - fixture
