"""S3 Inventory for the embedded AWS: generate objects, write deliveries in S3's real layout and
formats (CSV.gz, Parquet, ORC), and read real ones from disk."""

from .fields import DEFAULT_OPTIONAL_FIELDS, FIELD_SELECTIONS, decode_inventory_key, encode_inventory_key
from .objects import InventoryObject, current_objects, generate_objects
from .reader import InventoryDirError, LocalInventory, load_inventory_dir, read_inventory, read_inventory_dir
from .seed import create_objects, seed_bucket
from .writer import InventoryDelivery, render_inventory, write_inventory, write_inventory_dir

__all__ = [
    "DEFAULT_OPTIONAL_FIELDS",
    "FIELD_SELECTIONS",
    "InventoryDelivery",
    "InventoryDirError",
    "InventoryObject",
    "LocalInventory",
    "create_objects",
    "current_objects",
    "decode_inventory_key",
    "encode_inventory_key",
    "generate_objects",
    "load_inventory_dir",
    "read_inventory",
    "read_inventory_dir",
    "render_inventory",
    "seed_bucket",
    "write_inventory",
    "write_inventory_dir",
]
