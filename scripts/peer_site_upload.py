"""A side-by-side peer for nubes's static-site sync (scripts/bench.sh site): what a user
would otherwise write with the official Python SDK (azure-storage-blob), an 8-thread
uploader that skips files whose Content-MD5 already matches.

    python peer_site_upload.py <container URL with SAS> <folder> [--threads 8]

Prints {"uploaded": N, "unchanged": M} as JSON. Run from the benchmark's own virtualenv
(scripts/bench.sh installs azure-storage-blob there, not with the test prerequisites).
"""

import argparse
import concurrent.futures
import hashlib
import json
import mimetypes
import os

from azure.storage.blob import ContainerClient, ContentSettings


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("container_url")
    ap.add_argument("folder")
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()
    container = ContainerClient.from_container_url(args.container_url)
    if not container.exists():
        container.create_container()
    remote = {b.name: bytes(b.content_settings.content_md5 or b"") for b in container.list_blobs()}

    def sync(path):
        name = os.path.relpath(path, args.folder).replace(os.sep, "/")
        with open(path, "rb") as f:
            data = f.read()
        md5 = hashlib.md5(data).digest()
        if remote.get(name) == md5:
            return False
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        container.upload_blob(name, data, overwrite=True, max_concurrency=1,
                              content_settings=ContentSettings(content_type=kind, content_md5=md5))
        return True

    files = [os.path.join(d, f) for d, _, names in os.walk(args.folder) for f in names]
    with concurrent.futures.ThreadPoolExecutor(args.threads) as pool:
        done = list(pool.map(sync, files))
    print(json.dumps({"uploaded": sum(done), "unchanged": len(done) - sum(done)}))


if __name__ == "__main__":
    main()
