"""A tiny ScanNet-like mirror for tests: synthetic scenes on disk, served over real HTTP on 127.0.0.1.

`build_mirror(root)` writes a few small scenes in ScanNet's server layout. `MirrorServer(root)`
serves that folder from a background thread with byte-range support, records every request, and
can be told to misbehave on a given path:

    drop          send half the body, then close the connection (Content-Length promised more)
    reset         send half the body, pause, then reset the connection (RST)
    truncate      send half the body with a Content-Length that matches it (looks complete)
    stall         send half the body, then go silent for `stall_s` seconds (client times out)
    ignore_range  answer 200 with the whole file even when a Range was asked for
    404 / 500     answer with that status
"""

from __future__ import annotations

import base64
import json
import re
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from beep3d.data.ply import write_ply

TRAIN = ("scene0000_00", "scene0000_01")
VAL = ("scene0011_00",)
TEST = ("scene0707_00",)
SCAN_SUFFIXES = ("_vh_clean_2.ply", "_vh_clean_2.0.010000.segs.json", ".aggregation.json", ".txt")
TEST_SUFFIXES = ("_vh_clean_2.ply", "_vh_clean_2.0.010000.segs.json", ".txt")


def build_mirror(root: Path, seed: int = 0) -> list[str]:
    """Write the mirror under `root/v2/`; returns every servable data path (relative to root)."""
    rng = np.random.default_rng(seed)
    paths = []
    for split, scenes in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        sub = "scans_test" if split == "test" else "scans"
        for i, scene in enumerate(scenes):
            d = root / "v2" / sub / scene
            d.mkdir(parents=True)
            n_vert = 2000 + 500 * i  # a few tens of kB: big enough to be cut in the middle
            xyz = rng.uniform(0, 4, (n_vert, 3)).astype(np.float32)
            rgb = rng.integers(0, 256, (n_vert, 3), dtype=np.uint8)
            faces = rng.integers(0, n_vert, (2 * n_vert, 3), dtype=np.int32)
            write_ply(d / f"{scene}_vh_clean_2.ply", xyz, rgb, faces)
            seg = (np.arange(n_vert) // 50).tolist()
            segs = {"sceneId": scene, "segIndices": seg}
            (d / f"{scene}_vh_clean_2.0.010000.segs.json").write_text(json.dumps(segs))
            meta = "colorHeight = 968\ncolorWidth = 1296\n"
            if split != "test":
                meta += "axisAlignment = 1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1\n"
                groups = [
                    {"id": k, "objectId": k, "label": "chair", "segments": [k, k + 1]}
                    for k in range(0, 20, 2)
                ]
                agg = {"sceneId": scene, "segGroups": groups}
                (d / f"{scene}.aggregation.json").write_text(json.dumps(agg))
            (d / f"{scene}.txt").write_text(meta)
            (d / f"{scene}.sens").write_bytes(b"\0" * 4096)  # must never be requested
            suffixes = TEST_SUFFIXES if split == "test" else SCAN_SUFFIXES
            paths += [f"v2/{sub}/{scene}/{scene}{s}" for s in suffixes]
        (root / "v2" / "splits").mkdir(parents=True, exist_ok=True)
        (root / "v2" / "splits" / f"scannetv2_{split}.txt").write_text("".join(s + "\n" for s in scenes))
    (root / "v2" / "tasks").mkdir(parents=True)
    tsv = "id\traw_category\tcategory\tcount\tnyu40id\tnyu40class\n1\tchair\tchair\t100\t5\tchair\n"
    (root / "v2" / "tasks" / "scannetv2-labels.combined.tsv").write_text(tsv)
    paths.append("v2/tasks/scannetv2-labels.combined.tsv")
    return paths


@dataclass
class Hit:
    path: str  # URL path, unquoted, without the query
    query: str
    range: str | None  # the Range header as received
    auth: str | None  # the Authorization header as received
    status: int
    fault: str | None


class MirrorServer:
    """Serve `root` on an ephemeral 127.0.0.1 port; use as a context manager."""

    def __init__(self, root: Path, *, user: str | None = None, password: str = "", token: str | None = None,
                 stall_s: float = 2.0):  # fmt: skip
        self.root = root.resolve()
        self.basic = (
            None if user is None else "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        )
        self.token = token
        self.stall_s = stall_s
        self.hits: list[Hit] = []
        self._once: dict[str, list[str]] = {}
        self._always: dict[str, str] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def faults(self, path: str, *kinds: str) -> None:
        """The next len(kinds) requests of `path` misbehave in this order."""
        self._once.setdefault("/" + path.lstrip("/"), []).extend(kinds)

    def always(self, path: str, kind: str) -> None:
        self._always["/" + path.lstrip("/")] = kind

    def hits_for(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.path == "/" + path.lstrip("/")]

    def _take_fault(self, path: str) -> str | None:
        with self._lock:
            queue = self._once.get(path)
            if queue:
                return queue.pop(0)
            return self._always.get(path)

    def _record(self, hit: Hit) -> None:
        with self._lock:
            self.hits.append(hit)

    def __enter__(self) -> MirrorServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _make_handler(mirror: MirrorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

        def _status_only(self, hit: Hit, status: int, extra: dict[str, str] | None = None) -> None:
            hit.status = status
            mirror._record(hit)
            self.send_response(status)
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            path = urllib.parse.unquote(parts.path)
            auth = self.headers.get("Authorization")
            fault = mirror._take_fault(path)
            hit = Hit(path, parts.query, self.headers.get("Range"), auth, 0, fault)
            if mirror.basic is not None and auth != mirror.basic:
                return self._status_only(hit, 401, {"WWW-Authenticate": 'Basic realm="mirror"'})
            if mirror.token is not None and urllib.parse.parse_qs(parts.query).get("token") != [mirror.token]:
                return self._status_only(hit, 403)
            if fault in ("404", "500"):
                return self._status_only(hit, int(fault))
            file = (mirror.root / path.lstrip("/")).resolve()
            if not file.is_file() or mirror.root not in file.parents:
                return self._status_only(hit, 404)
            data = file.read_bytes()
            start, status = 0, 200
            match = re.fullmatch(r"bytes=(\d+)-", hit.range or "")
            if match and fault != "ignore_range":
                start, status = int(match.group(1)), 206
                if start >= len(data):
                    return self._status_only(hit, 416, {"Content-Range": f"bytes */{len(data)}"})
            body = data[start:]
            if fault in ("truncate", "drop", "reset", "stall"):
                cut = len(body) // 2
                sent, body = body[:cut], body[:cut] if fault == "truncate" else body
            hit.status = status
            mirror._record(hit)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if fault in ("drop", "reset", "stall"):
                self.wfile.write(sent)
                self.wfile.flush()
                if fault == "stall":
                    time.sleep(mirror.stall_s)
                if fault == "reset":  # linger 0: close() sends RST instead of FIN
                    time.sleep(0.3)  # let the client read the half first: a RST discards unread data
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                else:
                    self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return None
            self.wfile.write(body)
            return None

    return Handler
