"""The scenarios, registered in the order they run and are reported.

Each module registers its scenarios with :func:`bench.core.scenario`; a new
feature adds a module here (and a name to the smoke test's list).
"""

from . import throughput, intake, isolation, soap, proxy, growth, memory, api, facebook  # noqa: F401, I001
from . import imports  # noqa: F401
from . import cli  # noqa: F401
