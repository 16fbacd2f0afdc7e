"""The database schema's history as Alembic migrations, shipped in the package. ``service.db.upgrade``
applies them (at service start-up and by ``lossweep db upgrade``); never change a released migration,
add the next one."""
