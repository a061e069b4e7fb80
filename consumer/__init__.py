"""paper-consumer: persist a paper-trading bot's Redis Streams events into PostgreSQL.

The package is split by responsibility (see README "Architecture"): ``events`` (the stream
contract), ``accounting`` (position maths, pure), ``store`` (the only module that talks to
PostgreSQL), ``stream`` (the only one that talks to Redis), ``worker`` (the loop),
``migrations``, ``settings``, ``logs`` and ``cli``.
"""

__version__ = "0.1.0"
