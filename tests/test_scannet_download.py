"""The ScanNet downloader against a real HTTP server on 127.0.0.1 that can be told to misbehave."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from http_mirror import TEST, TRAIN, VAL, MirrorServer, build_mirror
from plyfile import PlyData, PlyElement

from beep3d.data.ply import read_ply, write_ply
from pipeline.config import ConfigError
from pipeline.http_fetch import FetchPolicy, VerificationError, backoff_delay, join_url, redact
from pipeline.scannet_download import (
    ENV_SPLITS,
    ENV_URL,
    MARKER,
    TERMS_URL,
    DownloadError,
    ScanNetConfig,
    download_scannet,
)
from pipeline.scannet_verify import parse_split_list, verify_by_name, verify_ply

PLY = f"v2/scans/{TRAIN[0]}/{TRAIN[0]}_vh_clean_2.ply"
SEGS = f"v2/scans/{TRAIN[1]}/{TRAIN[1]}_vh_clean_2.0.010000.segs.json"
FAST_BACKOFF = 0.01  # seconds; keeps retry tests quick


def cfg(base_url: str = "", **over) -> ScanNetConfig:
    fields = dict(accept_terms=True, base_url=base_url, splits=("train", "val", "test"), scenes=(),
                  max_scenes=0, workers=4, retries=3, timeout_s=10.0)  # fmt: skip
    fields.update(over)
    return ScanNetConfig(**fields)


def out_path(rel: str) -> str:
    """Mirror path -> path under out_dir (the labels file moves to the top level)."""
    rel = rel.removeprefix("v2/")
    return rel.removeprefix("tasks/")


@pytest.fixture(autouse=True)
def _no_proxy_no_env(monkeypatch):
    # A proxy configured on the test machine must not intercept 127.0.0.1.
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv(ENV_URL, raising=False)
    monkeypatch.delenv(ENV_SPLITS, raising=False)


@pytest.fixture
def mirror_root(tmp_path) -> Path:
    root = tmp_path / "server"
    build_mirror(root)
    return root


@pytest.fixture
def mirror(mirror_root):
    with MirrorServer(mirror_root) as server:
        yield server


def download(server: MirrorServer, out: Path, **over) -> dict:
    return download_scannet(cfg(server.url, **over), out, progress=False, backoff_s=FAST_BACKOFF)


def assert_same_bytes(root: Path, out: Path, rel: str) -> None:
    assert (out / out_path(rel)).read_bytes() == (root / rel).read_bytes(), rel


def data_paths(root: Path) -> list[str]:
    paths = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return sorted(p for p in paths if "/splits/" not in p and not p.endswith(".sens"))


# ----------------------------------------------------------------- normal operation


def test_full_download_layout_bytes_and_request_log(mirror, mirror_root, tmp_path):
    out = tmp_path / "out"
    summary = download(mirror, out)
    for rel in data_paths(mirror_root):
        assert_same_bytes(mirror_root, out, rel)
    assert read_ply(out / out_path(PLY)).faces is not None
    for split, scenes in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        assert (out / f"scannetv2_{split}.txt").read_text().split() == sorted(scenes)
    assert not (out / "scans_test" / TEST[0] / f"{TEST[0]}.aggregation.json").exists()
    for scene in (*TRAIN, *VAL):
        assert json.loads((out / "scans" / scene / MARKER).read_text())["files"]
    assert not list(out.rglob("*.part")) and not list(out.rglob("*.sens")) and not list(out.rglob("*.tmp"))
    # Each needed file requested once, nothing else (no .sens), all answered 200.
    requested = sorted(h.path.lstrip("/") for h in mirror.hits)
    splits = [f"v2/splits/scannetv2_{s}.txt" for s in ("train", "val", "test")]
    assert requested == sorted(data_paths(mirror_root) + splits)
    assert {h.status for h in mirror.hits} == {200}
    n_files = len(data_paths(mirror_root))
    assert summary["scenes"] == 4 and summary["scenes_skipped"] == 0
    assert summary["files_fetched"] == n_files + 3 and summary["retries"] == 0
    total = sum((mirror_root / p).stat().st_size for p in data_paths(mirror_root) + splits)
    assert summary["bytes"] == total


def test_rerun_downloads_nothing(mirror, tmp_path):
    out = tmp_path / "out"
    download(mirror, out)
    first = len(mirror.hits)
    summary = download(mirror, out)
    assert len(mirror.hits) == first, "a re-run sent requests"
    assert summary["files_fetched"] == 0 and summary["bytes"] == 0
    assert summary["scenes_skipped"] == 4


def test_rerun_resumes_an_incomplete_scene(mirror, mirror_root, tmp_path):
    out = tmp_path / "out"
    download(mirror, out)
    scene_dir = out / "scans" / TRAIN[0]
    (scene_dir / MARKER).unlink()
    (scene_dir / f"{TRAIN[0]}.txt").unlink()
    ply = out / out_path(PLY)
    full = ply.read_bytes()
    ply.unlink()
    ply.with_name(ply.name + ".part").write_bytes(full[:1000])  # left by an interrupted run
    mirror.hits.clear()
    summary = download(mirror, out)
    assert sorted(h.path for h in mirror.hits) == sorted([f"/{PLY}", f"/v2/scans/{TRAIN[0]}/{TRAIN[0]}.txt"])
    assert mirror.hits_for(PLY)[0].range == "bytes=1000-" and mirror.hits_for(PLY)[0].status == 206
    assert ply.read_bytes() == full
    assert (scene_dir / MARKER).exists()
    assert summary["files_fetched"] == 2 and summary["scenes_skipped"] == 3


def test_corrupt_local_file_without_marker_is_fetched_again(mirror, mirror_root, tmp_path):
    out = tmp_path / "out"
    download(mirror, out)
    (out / "scans" / TRAIN[0] / MARKER).unlink()
    ply = out / out_path(PLY)
    ply.write_bytes(ply.read_bytes()[:-7])
    mirror.hits.clear()
    download(mirror, out)
    assert [h.path for h in mirror.hits] == [f"/{PLY}"]
    assert_same_bytes(mirror_root, out, PLY)


def test_max_scenes_and_explicit_scenes(mirror, tmp_path):
    out = tmp_path / "out"
    summary = download(mirror, out, splits=("train",), max_scenes=1)
    assert summary["scenes_per_split"] == {"train": 1}
    assert (out / "scannetv2_train.txt").read_text() == f"{TRAIN[0]}\n"
    assert not (out / "scans" / TRAIN[1]).exists()
    summary = download(mirror, out, splits=("train", "val"), scenes=(TRAIN[1], VAL[0]))
    assert summary["scenes_per_split"] == {"train": 1, "val": 1}
    assert (out / "scans" / TRAIN[1] / MARKER).exists()
    with pytest.raises(ConfigError, match="scene0999_00"):
        download(mirror, out, splits=("train",), scenes=("scene0999_00",))


def test_split_lists_from_local_folder(mirror_root, tmp_path, monkeypatch):
    local = tmp_path / "Benchmark"
    (mirror_root / "v2" / "splits").rename(local)  # the server no longer has them
    monkeypatch.setenv(ENV_SPLITS, str(local))
    out = tmp_path / "out"
    with MirrorServer(mirror_root) as server:
        summary = download(server, out)
        assert not [h for h in server.hits if "/splits/" in h.path]
    assert summary["scenes"] == 4
    monkeypatch.setenv(ENV_SPLITS, str(tmp_path / "nowhere"))
    with pytest.raises(DownloadError, match=ENV_SPLITS):
        download_scannet(cfg("http://127.0.0.1:9"), tmp_path / "out2", progress=False)


# ----------------------------------------------------------------- failures and recovery


@pytest.mark.parametrize("kind", ["drop", "reset"])
def test_connection_lost_mid_file_resumes_with_range(mirror, mirror_root, tmp_path, kind):
    mirror.faults(PLY, kind)
    out = tmp_path / "out"
    summary = download(mirror, out)
    hits = mirror.hits_for(PLY)
    size = (mirror_root / PLY).stat().st_size
    assert [h.status for h in hits] == [200, 206]
    assert hits[0].range is None
    resumed_at = int(hits[1].range.removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at < size  # it kept the bytes it had, did not start over
    assert_same_bytes(mirror_root, out, PLY)
    assert summary["retries"] == 1
    assert not list(out.rglob("*.part"))


def test_server_ignoring_range_restarts_from_zero(mirror, mirror_root, tmp_path):
    mirror.faults(PLY, "drop", "ignore_range")
    out = tmp_path / "out"
    summary = download(mirror, out)
    hits = mirror.hits_for(PLY)
    assert [h.status for h in hits] == [200, 200]
    assert hits[1].range is not None  # asked to resume, got the whole file: must not append it
    assert_same_bytes(mirror_root, out, PLY)
    # Every byte counted once, plus the first half that was thrown away: nothing was appended.
    splits = [f"v2/splits/scannetv2_{s}.txt" for s in ("train", "val", "test")]
    total = sum((mirror_root / p).stat().st_size for p in data_paths(mirror_root) + splits)
    assert summary["bytes"] == total + (mirror_root / PLY).stat().st_size // 2


def test_truncated_body_fails_verification_and_is_fetched_again(mirror, mirror_root, tmp_path):
    mirror.faults(PLY, "truncate")
    mirror.faults(SEGS, "truncate")
    out = tmp_path / "out"
    summary = download(mirror, out)
    for rel in (PLY, SEGS):
        hits = mirror.hits_for(rel)
        assert len(hits) == 2 and all(h.range is None for h in hits)  # bad .part deleted, fresh start
        assert_same_bytes(mirror_root, out, rel)
    assert summary["retries"] == 2


def test_always_truncated_gives_a_clear_error(mirror, tmp_path):
    mirror.always(PLY, "truncate")
    out = tmp_path / "out"
    with pytest.raises(DownloadError) as info:
        download(mirror, out, retries=2)
    message = str(info.value)
    assert TRAIN[0] in message and f"{TRAIN[0]}_vh_clean_2.ply" in message
    assert "verification failed" in message and "3 attempts" in message
    assert info.value.scene_id == TRAIN[0]
    assert len(mirror.hits_for(PLY)) == 3  # retries + 1, verification failures count as retries
    final = out / out_path(PLY)
    assert not final.exists() and not final.with_name(final.name + ".part").exists()
    assert not (out / "scans" / TRAIN[0] / MARKER).exists()
    assert not (out / "scannetv2_train.txt").exists()  # the run did not complete


def test_404_fails_at_once_without_retries(mirror, tmp_path):
    mirror.faults(PLY, "404")
    with pytest.raises(DownloadError) as info:
        download(mirror, tmp_path / "out", retries=5, workers=1)
    message = str(info.value)
    assert "404" in message and f"/{PLY}" in message and TRAIN[0] in message
    assert len(mirror.hits_for(PLY)) == 1
    # Fail fast: the failure stops queued files from being started (15 data files in all).
    assert len(mirror.hits) < 3 + 15


def test_5xx_and_timeout_are_retried(mirror_root, tmp_path):
    with MirrorServer(mirror_root, stall_s=3.0) as server:
        server.faults(PLY, "500", "500")
        server.faults(SEGS, "stall")
        summary = download_scannet(cfg(server.url, timeout_s=1.0), tmp_path / "out", progress=False,
                                   backoff_s=FAST_BACKOFF)  # fmt: skip
        assert [h.status for h in server.hits_for(PLY)] == [500, 500, 200]
        assert len(server.hits_for(SEGS)) >= 2
    for rel in (PLY, SEGS):
        assert_same_bytes(mirror_root, tmp_path / "out", rel)
    assert summary["retries"] >= 3


def test_connection_refused_is_retried_then_reported(tmp_path):
    with MirrorServer(tmp_path) as server:  # learn a free port, then close it
        url = server.url
    with pytest.raises(DownloadError, match=r"after 3 attempts.*(Refused|refused)"):
        download_scannet(cfg(url, retries=2), tmp_path / "out", progress=False, backoff_s=FAST_BACKOFF)


def test_complete_part_from_a_crash_is_verified_not_refetched(mirror, mirror_root, tmp_path):
    out = tmp_path / "out"
    final = out / out_path(PLY)
    final.parent.mkdir(parents=True)
    final.with_name(final.name + ".part").write_bytes((mirror_root / PLY).read_bytes())
    stale = out / out_path(SEGS)
    stale.parent.mkdir(parents=True)
    stale.with_name(stale.name + ".part").write_bytes(b"x" * 10**6)  # longer than the real file
    download(mirror, out)
    assert [h.status for h in mirror.hits_for(PLY)] == [416]
    assert [h.status for h in mirror.hits_for(SEGS)] == [416, 200]
    for rel in (PLY, SEGS):
        assert_same_bytes(mirror_root, out, rel)


def test_scene_ids_that_escape_out_dir_are_refused(mirror_root, tmp_path):
    (mirror_root / "v2" / "splits" / "scannetv2_val.txt").write_text(f"{VAL[0]}\n../../evil\n")
    with MirrorServer(mirror_root) as server, pytest.raises(DownloadError, match="not a scene id"):
        download(server, tmp_path / "deep" / "out", retries=0)
    assert not list(tmp_path.rglob("evil*"))


# ----------------------------------------------------------------- terms, URL, secrets


def test_refuses_without_accepting_the_terms(mirror, tmp_path):
    with pytest.raises(ConfigError, match="Terms of Use") as info:
        download_scannet(cfg(mirror.url, accept_terms=False), tmp_path / "out", progress=False)
    assert TERMS_URL in str(info.value)
    assert mirror.hits == [] and not (tmp_path / "out").exists()


def test_base_url_from_environment(mirror, mirror_root, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=ENV_URL):
        download_scannet(cfg(""), tmp_path / "out", progress=False)
    monkeypatch.setenv(ENV_URL, mirror.url + "/")
    summary = download_scannet(cfg(""), tmp_path / "out", progress=False)
    assert summary["scenes"] == 4 and len(mirror.hits) > 0
    assert_same_bytes(mirror_root, tmp_path / "out", PLY)


def test_credentials_never_appear_in_logs_errors_or_summary(mirror_root, tmp_path, caplog, capsys):
    password, token = "pw-s3cr3t-7781", "tok-s3cr3t-4402"
    caplog.set_level(logging.DEBUG)
    with MirrorServer(mirror_root, user="alice", password=password, token=token) as server:
        base = server.url.replace("http://", f"http://alice:{password}@") + f"/?token={token}"
        server.faults(PLY, "drop")  # produces a retry warning that names the URL
        summary = download_scannet(cfg(base), tmp_path / "out", progress=True, backoff_s=FAST_BACKOFF)
        # The credentials were really used: every request carried them.
        assert all(h.auth == server.basic and f"token={token}" in h.query for h in server.hits)
        assert {h.status for h in server.hits} == {200, 206}
        server.faults(SEGS, "404")
        (tmp_path / "out" / "scans" / TRAIN[1] / MARKER).unlink()
        (tmp_path / "out" / out_path(SEGS)).unlink()
        with pytest.raises(DownloadError) as not_found:
            download_scannet(cfg(base), tmp_path / "out", progress=True, backoff_s=FAST_BACKOFF)
        wrong = base.replace(password, "nope-" + password[::-1])
        (tmp_path / "out" / "scannetv2-labels.combined.tsv").unlink()
        with pytest.raises(DownloadError, match="401") as unauthorised:
            download_scannet(cfg(wrong, retries=1), tmp_path / "out", progress=True)
    captured = capsys.readouterr()
    texts = {
        "logs": caplog.text,
        "stdout": captured.out,
        "stderr": captured.err,
        "summary": json.dumps(summary),
        "404 error": str(not_found.value),
        "401 error": str(unauthorised.value),
    }
    assert "retry 1/3" in caplog.text and f"/{PLY}" in caplog.text  # the logs did name the file
    assert "404" in texts["404 error"] and f"/{SEGS}" in texts["404 error"]
    for where, text in texts.items():
        for secret in (password, password[::-1], token, "alice:"):
            assert secret not in text, f"{secret!r} leaked into {where}"


# ----------------------------------------------------------------- units: verification, URLs, back-off


def _write_mesh(path: Path, n_vert: int = 50, n_face: int = 60) -> None:
    rng = np.random.default_rng(1)
    write_ply(path, rng.uniform(0, 1, (n_vert, 3)).astype(np.float32),
              rng.integers(0, 256, (n_vert, 3), dtype=np.uint8),
              rng.integers(0, n_vert, (n_face, 3), dtype=np.int32))  # fmt: skip


def test_verify_ply_sizes(tmp_path):
    good = tmp_path / "a_vh_clean_2.ply"
    _write_mesh(good)
    verify_ply(good)
    data = good.read_bytes()
    for name, body in (("short", data[:-1]), ("long", data + b"\0"), ("header", data[:100])):
        bad = tmp_path / f"{name}.ply"
        bad.write_bytes(body)
        with pytest.raises(VerificationError):
            verify_ply(bad)


def test_verify_ply_mixed_face_lengths_and_ascii(tmp_path):
    vertex = np.zeros(4, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    faces = np.empty(2, dtype=[("vertex_indices", object)])
    faces["vertex_indices"] = [np.array([0, 1, 2], "<i4"), np.array([0, 1, 2, 3], "<i4")]
    elements = [PlyElement.describe(vertex, "vertex"), PlyElement.describe(faces, "face")]
    for text in (False, True):
        path = tmp_path / f"mixed_{text}.ply"
        PlyData(elements, text=text, byte_order="<").write(str(path))
        verify_ply(path)
        path.write_bytes(path.read_bytes()[:-3])
        with pytest.raises(VerificationError):
            verify_ply(path)


def test_verify_json_and_text(tmp_path):
    segs = tmp_path / "s_vh_clean_2.0.010000.segs.json"
    segs.write_text('{"segIndices": [0, 0, 1]}')
    verify_by_name(segs)
    segs.write_text('{"segIndices": [0, 0, ')
    with pytest.raises(VerificationError, match="JSON"):
        verify_by_name(segs)
    agg = tmp_path / "s.aggregation.json"
    agg.write_text('{"segIndices": []}')
    with pytest.raises(VerificationError, match="segGroups"):
        verify_by_name(agg)
    meta = tmp_path / "s.txt"
    meta.write_text("<!DOCTYPE html><html>Please log in</html>")
    with pytest.raises(VerificationError, match="HTML"):
        verify_by_name(meta)
    meta.write_bytes(b"axisAlignment = \xff\xfe")
    with pytest.raises(VerificationError, match="UTF-8"):
        verify_by_name(meta)
    assert parse_split_list("scene0000_00\n\n scene0001_01 \n") == ["scene0000_00", "scene0001_01"]
    for bad in ("scene0000_00/../x", "scene000_00", "/etc/passwd"):
        with pytest.raises(VerificationError):
            parse_split_list(bad)


def test_redact_and_join_url():
    url = "https://bob:pa%40ss@host.example:8443/data/?token=abc&x=1#frag"
    assert redact(url) == "https://host.example:8443/data/?<redacted>"
    joined = join_url(url, "v2/scans/scene0000_00/scene0000_00.txt")
    assert (
        joined
        == "https://bob:pa%40ss@host.example:8443/data/v2/scans/scene0000_00/scene0000_00.txt?token=abc&x=1"
    )
    assert redact("http://127.0.0.1:80/a") == "http://127.0.0.1:80/a"


def test_backoff_doubles_and_is_capped():
    policy = FetchPolicy(retries=6, timeout_s=1.0, backoff_s=0.5, backoff_max_s=3.0)
    assert [backoff_delay(k, policy) for k in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
