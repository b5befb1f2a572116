"""Killing the node mid-upload leaves the database and the blob store consistent."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from sqlalchemy import text

from ledgerlm.node import Node
from ledgerlm.store.blobs import ORPHAN_GRACE_SECONDS

WRITER = textwrap.dedent(
    """
    import io, hashlib, sys, itertools
    import orjson
    from eth_account import Account
    from ledgerlm.config import Home
    from ledgerlm.datanets import DatanetSpec, FileEntry, IncomingFile, manifest_hash
    from ledgerlm.identity import sign_action
    from ledgerlm.node import Node

    node = Node.open(Home(sys.argv[1]))
    owner, contributor = Account.from_key(b"\\x01" * 32), Account.from_key(b"\\x02" * 32)
    spec = DatanetSpec(name="crash", schema={"type": "object"})
    if not any(d.name == "crash" for d in node.datanets.list()):
        node.datanets.create(spec, sign_action(owner, "CreateDatanet", {"name": "crash", "specHash": spec.spec_hash()}, domain=node.domain))
    print("ready", flush=True)
    for n in itertools.count():
        body = b"".join(orjson.dumps({"run": sys.argv[2], "upload": n, "i": i, "pad": "x" * 50}) + b"\\n" for i in range(5000))
        entries = [FileEntry(name=f"u{n}.jsonl", sha256=hashlib.sha256(body).hexdigest(), size=len(body))]
        signed = sign_action(contributor, "Contribute", {"datanet": "crash", "manifestHash": manifest_hash(entries)}, domain=node.domain)
        node.datanets.contribute("crash", signed, [IncomingFile(f"u{n}.jsonl", io.BytesIO(body))])
        print(n, flush=True)
    """
)


def test_kill_during_uploads_leaves_consistent_state(home, tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    # The last kill waits for a committed upload first, so the kills hit real work however slow the machine is.
    for run, (delay, after_upload) in enumerate(((0.05, False), (0.4, False), (0.05, True))):
        # each run writes records of its own: what an earlier run committed is not a duplicate to refuse
        proc = subprocess.Popen([sys.executable, str(script), str(home.root), str(run)], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        if after_upload:
            assert proc.stdout.readline().strip().isdigit()
        time.sleep(delay)  # somewhere inside an upload: parsing, inserting or committing
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        _assert_consistent(home)
    # A killed upload's staged file stays for the orphan grace (it could be another node's upload in flight on a
    # shared home); once older than that, the next open clears it.
    staged = [p for p in (home.root / "blobs" / "staging").rglob("*") if p.is_file()]
    old = time.time() - ORPHAN_GRACE_SECONDS - 1
    for path in staged:
        os.utime(path, (old, old))
    node = Node.open(home)
    try:
        assert not any(p.is_file() for p in node.blobs.staging.rglob("*")), "staging leftovers are cleared on open"
        with node.db.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM uploads")).scalar() >= 1
    finally:
        node.close()


def _assert_consistent(home):
    node = Node.open(home)
    try:
        with node.db.connect() as conn:
            if conn.dialect.name == "sqlite":  # PostgreSQL has no file to damage: its check is the counts below
                assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
            uploads = conn.execute(text("SELECT id, contribution_count FROM uploads")).all()
            per_upload = dict(conn.execute(
                text("SELECT upload_id, count(*) FROM contributions GROUP BY upload_id")).all())
            # Every committed upload has exactly the contributions its receipt counts: no partial batch.
            for upload_id, count in uploads:
                assert per_upload.get(upload_id, 0) == count == 5000
            assert set(per_upload) <= {u for u, _ in uploads}
            for (blob,) in conn.execute(text("SELECT DISTINCT blob FROM contributions")):
                assert node.blobs.exists(blob), f"contribution names missing blob {blob}"
    finally:
        node.close()
