"""Alembic environment for ldapsrv.

At run time ``ldapsrv.store.schema_version`` configures Alembic in code and
hands over an open connection in ``config.attributes["connection"]``, so no
alembic.ini is needed. For writing new migrations from a source checkout,
``alembic -c /dev/null -x url=sqlite:///dev.db revision --autogenerate`` style
invocations work too: the URL then comes from ``-x url=...``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from ldapsrv.store.engine import make_engine
from ldapsrv.store.models import Base

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    if context.is_offline_mode():
        raise RuntimeError("ldapsrv migrations run online only (they need a connection)")
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise RuntimeError("no connection given: pass -x url=DATABASE_URL")
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


_main()
