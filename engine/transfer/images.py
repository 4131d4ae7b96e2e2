"""Images that arrive from elsewhere (a registry, an archive) written into the store.

The config blob is stored byte for byte as it arrived, because its digest
is the image ID: `docker pull`, `docker load` and layerlab must agree on
it. The manifest is layerlab's own (OCI, uncompressed layers), because the
layers were decompressed on the way in, so the manifest digest differs from
the registry's.
"""

from __future__ import annotations

import json
import logging

from layerlab.engine.errors import InvalidArgumentError
from layerlab.engine.image import Image, load_image
from layerlab.engine.store import MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST, Descriptor, Store
from layerlab.engine.transfer.layers import store_checked_bytes

log = logging.getLogger(__name__)


def parse_config(data: bytes, where: str) -> dict:
    """Parse an image config and check the fields that layerlab relies on."""
    try:
        config = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidArgumentError(f"image config from {where} is not valid JSON: {error}") from None
    if not isinstance(config, dict) or not isinstance(config.get("rootfs", {}).get("diff_ids"), list):
        raise InvalidArgumentError(f"image config from {where} has no rootfs.diff_ids list")
    return config


def commit_image(store: Store, config_bytes: bytes, config_digest: str, layers: list[Descriptor]) -> Image:
    """Store the config as it is plus a manifest over `layers` (already in the store); return the image."""
    store_checked_bytes(store, config_bytes, config_digest, len(config_bytes))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [layer.to_json() for layer in layers],
    }
    manifest_digest, _ = store.put_json(manifest)
    image = load_image(store, manifest_digest)
    log.debug("stored image %s as manifest %s", image.id, manifest_digest)
    return image
