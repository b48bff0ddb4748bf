"""A feature set's shards and manifest in the configured store (``$FAIRCHORD_STORE_URL``).

The featurize flow writes shards in the home as always; with a store URL set it
then publishes the new shards and the manifest to
``<store url>/features/<mel config hash>/`` (checked on arrival, see
:mod:`provenance.store_publish`) and records those locations. Readers get the
shards back as a verified local folder (:func:`local_feature_root`). Without a
store URL nothing here runs and the home locations are recorded as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from provenance.features import FeatureSetFiles
from provenance.object_store import home_location, location_path
from provenance.store_cache import cached_folder, is_remote
from provenance.store_publish import fetch_file, publish_file
from provenance.store_settings import published_root
from training.shard_writer import ShardInfo
from training.shards import MANIFEST_NAME, manifest_path


def published_feature_root(mel_config_hash: str) -> str | None:
    """``<store url>/features/<hash>``, or ``None`` when no store URL is set."""
    root = published_root("features")
    return f"{root}/{mel_config_hash}" if root else None


def pull_manifest(root: Path, published: str) -> bool:
    """Bring the published manifest into ``root`` (another machine may have extended the
    feature set); ``False`` when nothing is published yet. The caller trims it to the
    shards the provenance DB has recorded."""
    return fetch_file(f"{published}/{MANIFEST_NAME}", manifest_path(root))


def publish_feature_files(
    root: Path, published: str | None, shards: Iterable[ShardInfo], manifest_sha256: str
) -> tuple[str, str]:
    """Publish ``shards`` and the manifest (when ``published``); return the
    ``(shard location prefix, manifest location)`` to record."""
    if published is None:
        return home_location(root), home_location(manifest_path(root))
    for shard in shards:
        publish_file(root / shard.name, f"{published}/{shard.name}", sha256=shard.sha256)
    manifest_uri = publish_file(
        manifest_path(root), f"{published}/{MANIFEST_NAME}", sha256=manifest_sha256
    )
    return manifest_uri.rsplit("/", 1)[0], manifest_uri


def local_feature_root(files: FeatureSetFiles) -> Path:
    """A local folder with the feature set's files: the recorded root itself when it is
    local, else a cache folder of the manifest and every recorded shard, each checked
    against its recorded digest before use (a mismatch raises
    :class:`provenance.s3_objects.StoreIntegrityError`)."""
    if not is_remote(files.root_uri):
        return location_path(files.root_uri)
    named = [(uri.rsplit("/", 1)[-1], uri, sha) for uri, sha in files.shards]
    if files.manifest is not None:
        named.append((MANIFEST_NAME, *files.manifest))
    return cached_folder(f"features-{files.mel_config_hash}", named)
