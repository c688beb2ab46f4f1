"""An Iceberg table read from a folder that holds the files its metadata names (pyiceberg FileIO).

An Iceberg table's metadata names every file by its full location: S3 Tables writes them under the
table's warehouse location, ``s3://<id>--table-s3/metadata/...`` and ``.../data/...`` (S3 API
reference, GetTableMetadataLocation: ``warehouseLocation``), and pyiceberg on disk under the table's
``file://`` folder. A folder holding those files at the same relative paths (a downloaded table, or a
generated one moved elsewhere) is read here by mapping each location under the table's own
``location`` to the folder: a location anywhere else, or one that would resolve outside the folder
(``..``, a symbolic link), is refused, so a table's metadata can never make the reader open another
file. The folder is only read, never written to.

The table is built from one metadata file with this FileIO alone: the metadata file's own
``properties`` are not consulted to choose a FileIO (pyiceberg's ``StaticTable.from_metadata`` would
import the class a ``py-io-impl`` property names).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyiceberg.catalog.noop import NoopCatalog
from pyiceberg.io import InputFile, OutputFile
from pyiceberg.io.pyarrow import BUFFER_SIZE, ONE_MEGABYTE, PyArrowFile, PyArrowFileIO
from pyiceberg.serializers import FromInputFile
from pyiceberg.table import StaticTable

# pyiceberg builds a FileIO from its catalog's string properties (py-io-impl): where the table's
# location lies and the folder that holds its files come the same way.
LOCATION = "batchpipe.table-location"
FOLDER = "batchpipe.table-folder"
WRITABLE = "batchpipe.table-writable"

Fetch = Callable[[str, Path], None]


class TableFolderError(ValueError):
    """A location the folder cannot answer for: outside the table, outside the folder, or missing."""


class FolderFileIO(PyArrowFileIO):
    """Files under ``properties[LOCATION]`` read from (or, when WRITABLE, written to) the same
    relative paths under ``properties[FOLDER]``. ``fetch``, when set, is called for a file the folder
    lacks, to bring it there first (a download)."""

    def __init__(self, properties: dict[str, str] | None = None) -> None:
        properties = dict(properties or {})
        super().__init__(properties={k: v for k, v in properties.items() if k.startswith("batchpipe.")})
        self.location = properties[LOCATION].rstrip("/")
        self.folder = Path(properties[FOLDER]).resolve()
        self.writable = properties.get(WRITABLE) == "true"
        self.fetch: Fetch | None = None

    def local_path(self, location: str) -> Path:
        prefix = f"{self.location}/"
        if not location.startswith(prefix):
            raise TableFolderError(
                f"the table's metadata names {location[:300]!r}, outside the table's location "
                f"{self.location}: refused (every file of a table lies under its location)"
            )
        relative = location[len(prefix) :]
        path = (self.folder / relative).resolve()
        if not relative or not path.is_relative_to(self.folder):
            raise TableFolderError(
                f"the table's metadata names {location[:300]!r}, which would be read from outside "
                f"{self.folder}: refused"
            )
        if not self.writable and not path.is_file():
            if self.fetch is None:
                raise TableFolderError(
                    f"{self.folder} lacks {relative}, a file the table's metadata names: the folder must "
                    "hold the whole table (docs/FILTERS.md, previewing a downloaded table)"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fetch(location, path)
        return path

    def _file(self, location: str, path: Path) -> PyArrowFile:
        # The file keeps its location (a writer records it in the manifests); only its bytes are local.
        return PyArrowFile(
            fs=self.fs_by_scheme("file", ""),
            location=location,
            path=str(path),
            buffer_size=int(self.properties.get(BUFFER_SIZE, ONE_MEGABYTE)),
        )

    def new_input(self, location: str) -> PyArrowFile:
        return self._file(location, self.local_path(location))

    def new_output(self, location: str) -> PyArrowFile:
        if not self.writable:
            raise TableFolderError(f"the table folder {self.folder} is read only")
        path = self.local_path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        return self._file(location, path)

    def delete(self, location: str | InputFile | OutputFile) -> None:
        if not self.writable:
            raise TableFolderError(f"the table folder {self.folder} is read only")
        where = location.location if isinstance(location, (InputFile, OutputFile)) else location
        super().delete(str(self.local_path(where)))


def folder_io(location: str, folder: Path, *, writable: bool = False) -> dict[str, str]:
    """The catalog properties that make pyiceberg keep ``location``'s files in ``folder``."""
    return {
        "py-io-impl": f"{FolderFileIO.__module__}.{FolderFileIO.__name__}",
        LOCATION: location,
        FOLDER: str(folder),
        WRITABLE: "true" if writable else "false",
    }


def open_table(location: str, metadata_file: str, folder: Path, fetch: Fetch | None = None) -> Any:
    """The table whose metadata file is ``<location>/<metadata_file>``, every file read from ``folder``."""
    io = FolderFileIO({LOCATION: location, FOLDER: str(folder)})
    io.fetch = fetch
    metadata_location = f"{io.location}/{metadata_file}"
    metadata = FromInputFile.table_metadata(io.new_input(metadata_location))
    if metadata.location.rstrip("/") != io.location:
        raise TableFolderError(
            f"{metadata_file} names its table's location as {metadata.location[:300]!r}, not {io.location}"
        )
    return StaticTable(
        identifier=("batchpipe", metadata_location),
        metadata_location=metadata_location,
        metadata=metadata,
        io=io,
        catalog=NoopCatalog("batchpipe"),
    )
