"""Athena on DuckDB: moto's Athena API with queries that run (see ``service``), and the engine
(``engine.run_query``) that offline tools such as ``preview`` can use without moto."""

from .engine import Limits, QueryResult, run_query
from .errors import AthenaQueryError
from .service import AthenaSql, GlueCatalog, QueryExecution, S3Store, install_athena

__all__ = [
    "AthenaQueryError",
    "AthenaSql",
    "GlueCatalog",
    "Limits",
    "QueryExecution",
    "QueryResult",
    "S3Store",
    "install_athena",
    "run_query",
]
