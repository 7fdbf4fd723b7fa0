"""The embedded SQLite broker, polled five times a second instead of kombu's once.

kombu's SQL transport looks for new messages every ``polling_interval`` seconds, so with its
default of one second every job waits half a second to a second before a worker sees it
(bench/queue_latency.py). Its usual knob, ``broker_transport_options``, cannot carry the
interval here: the SQL transport hands every option to SQLAlchemy's ``create_engine``, which
refuses unknown ones. A subclass with its own interval, registered under the ``sqla`` scheme,
changes nothing else.
"""

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Transport


class PollingSQLTransport(Transport):
    polling_interval = 0.2


def use_polling_sql_transport(interval: float) -> None:
    """Make ``sqla+…`` broker URLs poll every ``interval`` seconds."""
    PollingSQLTransport.polling_interval = interval
    TRANSPORT_ALIASES["sqla"] = f"{__name__}:PollingSQLTransport"
