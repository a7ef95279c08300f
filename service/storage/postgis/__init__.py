"""The PostGIS store: SQLAlchemy 2 Core + GeoAlchemy2 over psycopg 3."""
