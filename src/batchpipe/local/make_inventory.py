"""`batchpipe local inventory`: writes a generated S3 Inventory folder to disk, laid out as S3 delivers
it, for `preview --inventory DIR` and `local run --inventory DIR` (docs/LOCAL.md)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from batchpipe.inputs import FORMATS

from . import inventory as inv
from .outputs import claim, prepare_out, write_inside
from .world import INVENTORY_BUCKET, INVENTORY_CONFIG_ID, INVENTORY_DEST_PREFIX


def local_inventory(args: argparse.Namespace) -> int:
    out = Path(args.out)
    prepare_out(out, entries=())
    fmt = FORMATS[args.format]
    versions = args.versions.capitalize()
    objects = inv.generate_objects(
        args.objects, seed=args.seed, bucket=args.bucket, versioned=versions == "All"
    )
    delivery = inv.render_inventory(
        source_bucket=args.bucket,
        dest_bucket=INVENTORY_BUCKET,
        dest_prefix=INVENTORY_DEST_PREFIX,
        config_id=INVENTORY_CONFIG_ID,
        objects=objects,
        fmt=fmt,
        versions=versions,
        fields=inv.DEFAULT_OPTIONAL_FIELDS if args.inventory_fields is None else args.inventory_fields,
        delivery_time=datetime.now(UTC).replace(minute=0, second=0, microsecond=0),
    )
    relative = {key: key[len(delivery.prefix) + 1 :] for key in delivery.files}
    for name in sorted({path.split("/", 1)[0] for path in relative.values()}):
        claim(out, name)  # before writing: a planted `data` link is refused, not followed
    for key, body in delivery.files.items():
        write_inside(out, relative[key], body)
    print(
        f"wrote an S3 Inventory of s3://{args.bucket} ({len(objects)} rows, {fmt}, {versions.lower()} "
        f"versions; fields {delivery.manifest['fileSchema'] if fmt == 'CSV' else ', '.join(args.inventory_fields or inv.DEFAULT_OPTIONAL_FIELDS)}) "
        f"to {out}/: use it with --inventory {out}"
    )
    return 0
