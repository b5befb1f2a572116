"""The content-addressed blob store on an S3-compatible object store: same names, same staging, same guarantees."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ledgerlm.store.blobs import CHUNK, ORPHAN_GRACE_SECONDS, BlobError, BlobStaging, StagedBlob, check_sha256

# One PUT makes an object visible whole or not at all (S3 has no partial objects); S3 refuses a single
# PUT above 5 GiB, so a blob that large would need a multipart upload, which this store does not do.
MAX_SINGLE_PUT = 5 * 1024**3
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_HEX_ETAG = re.compile(r'^"?([0-9a-f]{32})"?$')


@dataclass(frozen=True)
class S3Location:
    """`s3://bucket/prefix` split into its parts; the prefix is empty or ends without a slash."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        if not url.startswith("s3://"):
            raise BlobError(f"blobs must be an s3://bucket/prefix URL, not {url!r}", field="blobs")
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise BlobError(f"{bucket!r} is not a valid S3 bucket name (3-63 characters: lower-case letters, "
                            "digits, dots and hyphens)", field="blobs")
        return cls(bucket, prefix.strip("/"))

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def s3_client(endpoint_url: str = "", region: str = ""):
    """A boto3 S3 client; credentials come from boto3's own chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
    a profile, an instance role), never from the node's config file."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None,
                        config=Config(retries={"max_attempts": 5, "mode": "standard"}))


class S3BlobStore(BlobStaging):
    """Blobs under `<prefix>/<sha256>` in a bucket; uploads stage on local disk first, as in BlobStore.

    A blob is checked against its name before the PUT (the staged file is hashed again) and after it
    (the stored object's MD5 ETag and size against what was sent), so a blob under a name always holds
    the bytes that hash to it. The PUT is conditional (If-None-Match), so two nodes putting the same
    blob at once both succeed and the store keeps one copy.
    """

    def __init__(self, location: S3Location | str, staging: Path, *, client=None):
        self.location = S3Location.parse(location) if isinstance(location, str) else location
        self.staging = Path(staging)
        self.staging.mkdir(parents=True, exist_ok=True)
        self.client = client if client is not None else s3_client()

    def __str__(self) -> str:
        return str(self.location)

    def key(self, sha256: str) -> str:
        return self.location.key(check_sha256(sha256))

    def check_bucket(self) -> None:
        """Refuse a bucket that is missing or not ours to write, before anything is stored in it."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.location.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise BlobError(f"cannot use bucket {self.location.bucket!r}: {code or exc} (create it, or check the "
                            "credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)", field="blobs") from exc
        except BotoCoreError as exc:
            raise BlobError(f"cannot reach the S3 endpoint for {self.location}: {exc}", field="blobs") from exc

    def exists(self, sha256: str) -> bool:
        return self._head(self.key(sha256)) is not None

    def commit(self, staged: StagedBlob) -> bool:
        """Upload a staged blob under its hash; returns True if the store did not hold it before."""
        key = self.key(staged.sha256)
        md5 = _verified_md5(staged)
        if staged.size > MAX_SINGLE_PUT:
            raise BlobError(f"a blob of {staged.size} bytes is above the {MAX_SINGLE_PUT} bytes one S3 PUT takes",
                            field="files", status=413)
        try:
            with open(staged.path, "rb") as body:
                self._put(key, body, staged.sha256, md5)
            created = True
        except _AlreadyStored:
            created = False
        self._check_stored(key, staged.size, md5)
        staged.path.unlink(missing_ok=True)
        return created

    def _put(self, key: str, body: BinaryIO, sha256: str, md5: bytes) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.location.bucket, Key=key, Body=body, IfNoneMatch="*",
                                   ContentMD5=base64.b64encode(md5).decode(), Metadata={"sha256": sha256})
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412:
                raise _AlreadyStored from exc
            raise BlobError(f"the object store refused blob {sha256}: {exc}", status=502) from exc

    def _check_stored(self, key: str, size: int, md5: bytes) -> None:
        head = self._head(key)
        if head is None:
            raise BlobError(f"blob {key} is not in {self.location} after its upload", status=502)
        etag = _HEX_ETAG.match(head.get("ETag", ""))
        if head["ContentLength"] != size or (etag and bytes.fromhex(etag.group(1)) != md5):
            # Only a store that lost or changed bytes gets here; an unchecked object must not stay under the name.
            self.client.delete_object(Bucket=self.location.bucket, Key=key)
            raise BlobError(f"the object store holds different bytes under {key} than were sent; removed",
                            status=502)
        if not etag:  # an encrypted or multipart object: its ETag is no MD5, so hash what a reader gets
            sha256 = key.rsplit("/", 1)[-1]
            self._read_checked(key, sha256)

    def read_bytes(self, sha256: str) -> bytes:
        return self._read_checked(self.key(sha256), sha256)

    def _read_checked(self, key: str, sha256: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            data = self.client.get_object(Bucket=self.location.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise BlobError(f"blob {sha256} is missing from the store", status=404) from exc
            raise BlobError(f"cannot read blob {sha256} from {self.location}: {exc}", status=502) from exc
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BlobError(f"blob {sha256} in {self.location} does not hash to its name", status=502)
        return data

    def remove(self, sha256: str) -> None:
        self.client.delete_object(Bucket=self.location.bucket, Key=self.key(sha256))

    def hashes(self) -> list[str]:
        """Every blob in the store, by name."""
        return [key.rsplit("/", 1)[-1] for key, _ in self._objects()]

    def collect_orphans(self, referenced: set[str], *, older_than: float = ORPHAN_GRACE_SECONDS) -> int:
        """Delete blobs nothing refers to and older than `older_than` seconds (see BlobStore)."""
        cutoff = time.time() - older_than
        count = 0
        for key, modified in self._objects():
            if key.rsplit("/", 1)[-1] not in referenced and modified < cutoff:
                self.client.delete_object(Bucket=self.location.bucket, Key=key)
                count += 1
        return count

    def _objects(self):
        prefix = self.location.key("")
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.location.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix):]
                if "/" not in name and len(name) == 64:  # only our blobs, not whatever else shares the bucket
                    yield obj["Key"], obj["LastModified"].timestamp()

    def _head(self, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.location.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise BlobError(f"cannot reach {self.location}: {exc}", status=502) from exc


class _AlreadyStored(Exception):
    pass


def _verified_md5(staged: StagedBlob) -> bytes:
    """Hash the staged file again: a file changed on disk since staging must not go up under the old name."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(staged.path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
    if sha.hexdigest() != staged.sha256:
        staged.path.unlink(missing_ok=True)
        raise BlobError(f"staged blob {staged.sha256} changed on disk before its upload; nothing was stored",
                        field="files")
    return md5.digest()
