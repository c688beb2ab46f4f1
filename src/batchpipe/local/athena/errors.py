"""Why a query failed, in Athena's shape: a StateChangeReason and an AthenaError.

Messages follow the engine's (Trino's) ``ERROR_NAME: line L:C: detail`` form; ErrorCategory is
1 system / 2 user / 3 other and ErrorType comes from the Athena error catalog (1006 syntax error,
1110 table or view does not exist, 1301 entity not found, 1200 query not supported, ...).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AthenaQueryError(Exception):
    message: str
    error_type: int = 1000
    category: int = 2
    retryable: bool = False
    state: str = "FAILED"
    scanned_bytes: int = 0  # what was read before it failed (Statistics.DataScannedInBytes)

    def __str__(self) -> str:
        return self.message

    def athena_error(self) -> dict:
        return {
            "ErrorCategory": self.category,
            "ErrorType": self.error_type,
            "Retryable": self.retryable,
            "ErrorMessage": self.message,
        }


def _at(line: int | None, col: int | None) -> str:
    return f"line {line}:{col}: " if line else ""


def syntax_error(detail: str, line: int | None = None, col: int | None = None) -> AthenaQueryError:
    return AthenaQueryError(f"SYNTAX_ERROR: {_at(line, col)}{detail}", error_type=1006)


def table_not_found(catalog: str, database: str, table: str) -> AthenaQueryError:
    return AthenaQueryError(
        f"TABLE_NOT_FOUND: Table '{catalog}.{database}.{table}' does not exist", error_type=1110
    )


def schema_not_found(catalog: str, database: str) -> AthenaQueryError:
    return AthenaQueryError(
        f"SCHEMA_NOT_FOUND: Schema '{database}' does not exist in catalog '{catalog}'", 1301
    )


def column_not_found(detail: str) -> AthenaQueryError:
    return AthenaQueryError(f"COLUMN_NOT_FOUND: {detail}", error_type=1301)


def not_supported(detail: str) -> AthenaQueryError:
    return AthenaQueryError(f"NOT_SUPPORTED: {detail}", error_type=1200)


def invalid_argument(detail: str) -> AthenaQueryError:
    return AthenaQueryError(f"INVALID_FUNCTION_ARGUMENT: {detail}", error_type=1106)


def path_already_exists(location: str) -> AthenaQueryError:
    return AthenaQueryError(
        f"HIVE_PATH_ALREADY_EXISTS: Target directory for UNLOAD already exists: {location}. "
        "UNLOAD writes only to an empty location; delete the data under it or choose another.",
        error_type=1000,
    )


def bytes_scanned_exceeded(scanned: int, cutoff: int, state: str) -> AthenaQueryError:
    return AthenaQueryError(
        f"Query exhausted the workgroup's data usage control: it would scan {scanned} bytes and "
        f"BytesScannedCutoffPerQuery is {cutoff} bytes.",
        error_type=1008,
        state=state,
    )


def query_failed(detail: str) -> AthenaQueryError:
    return AthenaQueryError(f"GENERIC_USER_ERROR: {detail}", error_type=1009)


def data_error(detail: str) -> AthenaQueryError:
    return AthenaQueryError(f"HIVE_BAD_DATA: {detail}", error_type=1001)


def catalog_not_found(catalog: str) -> AthenaQueryError:
    # Trino's error name for a catalog the engine does not know (on Athena: an S3 table bucket not
    # integrated with AWS analytics services); 1301, entity not found, as for a schema.
    return AthenaQueryError(f"CATALOG_NOT_FOUND: Catalog '{catalog}' does not exist", error_type=1301)
