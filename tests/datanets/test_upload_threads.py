"""Uploads do their blocking work on threads of their own: however many parse at once, the routes that share
the server's thread pool keep answering."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from ledgerlm.api import create_app, multipart
from ledgerlm.datanets import UploadInProgress
from ledgerlm.node import Node

from .test_upload_files_cap import files
from .test_upload_limits import post


def test_uploads_hold_at_most_their_own_threads_and_other_routes_keep_answering(home, qa, bob, monkeypatch):
    monkeypatch.setattr(multipart, "UPLOAD_THREADS", 2)
    release, lock = threading.Event(), threading.Lock()
    running, most = [0], [0]
    finish = UploadInProgress.finish

    def slow_finish(self):  # each upload's final parse and insert, held until released
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(30)
        with lock:
            running[0] -= 1
        return finish(self)

    monkeypatch.setattr(UploadInProgress, "finish", slow_finish)
    with TestClient(create_app(lambda: Node.open(home))) as http, ThreadPoolExecutor(4) as pool:
        uploads = [pool.submit(post, http, bob, files(1, tag=f"u{i}"), manifest=False) for i in range(4)]
        deadline = time.monotonic() + 20
        while most[0] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # time for a third upload to reach its finish, were it allowed one
        assert most[0] == 2  # both upload threads taken: the other uploads wait for one
        assert http.get("/node/info").status_code == 200  # while the routes' shared pool is free
        release.set()
        statuses = [u.result(timeout=60).status_code for u in uploads]
    assert statuses == [201] * 4 and most[0] == 2
