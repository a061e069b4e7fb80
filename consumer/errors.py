"""The project's own exceptions.

Driver errors (psycopg, redis-py) are translated into these inside ``consumer/db/``,
``stream.py`` and ``migrations.py``, so callers handle a handful of meaningful cases and users
read messages that say what to do. Messages never contain passwords: URLs are passed through
``redact_url`` first.
"""


class PaperConsumerError(Exception):
    """Base class: every error this package raises on purpose."""


class ConfigError(PaperConsumerError):
    """The configuration is incomplete or contradictory."""


class MigrationError(PaperConsumerError):
    """A migration could not be applied, rolled back or verified."""


class MigrationChangedError(MigrationError):
    """An already applied migration file was edited afterwards."""


class SchemaNotReadyError(PaperConsumerError):
    """The database schema is missing objects the worker needs (run ``migrate up``)."""


class DatabaseUnavailableError(PaperConsumerError):
    """PostgreSQL cannot be reached right now; retrying later may succeed."""


class RedisUnavailableError(PaperConsumerError):
    """Redis cannot be reached right now; retrying later may succeed."""


class RejectedByDatabaseError(PaperConsumerError):
    """PostgreSQL refused the data itself (a constraint or a value out of range).

    Retrying the same rows will fail again, so the worker splits the batch to find the entry
    responsible and dead-letters it.
    """


class ReplayRefusedError(PaperConsumerError):
    """A replay would overwrite history or race a live worker, so it did not start."""


class ReplaySourceError(PaperConsumerError):
    """A replay or export source cannot be read as given (missing, malformed, out of order)."""


class LeaseLostError(PaperConsumerError):
    """This worker no longer owns the shard (its lease expired or was taken over): the batch in
    hand was not committed and stays pending for the new owner."""
