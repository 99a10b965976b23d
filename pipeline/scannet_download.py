"""Download the parts of ScanNet v2 this project reads, for users who accepted its Terms of Use.

ScanNet v2 is distributed only to people who agreed to the ScanNet Terms of Use
(http://kaldir.vc.in.tum.de/scannet/ScanNet_TOS.pdf, access as described at
https://github.com/ScanNet/ScanNet). They receive a download URL; this module fetches from it,
or from any mirror with the same layout, only the files the pipeline needs (a few GB), never
the 1.3 TB of `.sens` RGB-D streams.

Server layout below the base URL (the folder that holds `v2/`, as on ScanNet's own server):

    v2/scans/<scene>/<scene>_vh_clean_2.ply                 mesh (train/val scenes)
    v2/scans/<scene>/<scene>_vh_clean_2.0.010000.segs.json  superpoints
    v2/scans/<scene>/<scene>.aggregation.json               instances
    v2/scans/<scene>/<scene>.txt                            meta, with axisAlignment
    v2/scans_test/<scene>/...                               test scenes: ply, segs, txt (no labels)
    v2/tasks/scannetv2-labels.combined.tsv                  raw category -> nyu40 id
    v2/splits/scannetv2_{train,val,test}.txt                one scene id per line

A server without `v2/splits/` is fine: set BEEP3D_SCANNET_SPLITS to a local folder holding
ScanNet's split files (`Tasks/Benchmark/scannetv2_{train,val,test}.txt` in the ScanNet
repository); they are then read from there and never requested.

The base URL comes from `data.scannet.base_url`, or when that is empty from BEEP3D_SCANNET_URL.
A URL with credentials (`https://user:pass@host/...` or `...?token=...`) belongs in the
environment variable, not in params.yaml (which is committed); it never appears in a log line,
error or summary.

Output layout under `out_dir` (what the ScanNet reader expects):

    scans/<scene>/<scene>_vh_clean_2.ply, ..._vh_clean_2.0.010000.segs.json, .aggregation.json, .txt
    scans_test/<scene>/<scene>_vh_clean_2.ply, ..._vh_clean_2.0.010000.segs.json, .txt
    scannetv2-labels.combined.tsv
    scannetv2_{split}.txt       the scenes of that split that this run selected (all of them
                                unless `scenes` / `max_scenes` narrow the choice)
    .download/scannetv2_{split}.txt   the full split lists as fetched (so a re-run asks nothing)

Completeness: each file is verified (size as announced, PLY sizes, JSON, UTF-8; see
`pipeline.scannet_verify`) before it is renamed into place, so a final file is always whole.
When all files of a scene are in place, `<scene dir>/.complete` records their names and sizes;
a re-run skips a scene whose marker matches the files on disk without reading them. A scene
without a valid marker is checked file by file: verified files are kept, the rest fetched
(interrupted `.part` files resume). Delete `.download/` to fetch the split lists again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from beep3d.errors import DataError
from beep3d.io import write_json_atomic, write_text_atomic
from pipeline.config import ConfigError
from pipeline.http_fetch import FetchError, FetchPolicy, VerificationError, fetch_file, join_url, redact
from pipeline.scannet_verify import SCENE_ID, parse_split_list, read_text, verify_by_name, verify_split_list

log = logging.getLogger(__name__)

TERMS_URL = "http://kaldir.vc.in.tum.de/scannet/ScanNet_TOS.pdf"
ENV_URL = "BEEP3D_SCANNET_URL"
ENV_SPLITS = "BEEP3D_SCANNET_SPLITS"
SPLITS = ("train", "val", "test")
LABELS_TSV = "scannetv2-labels.combined.tsv"
MARKER = ".complete"
SPLIT_CACHE = ".download"
SCAN_SUFFIXES = ("_vh_clean_2.ply", "_vh_clean_2.0.010000.segs.json", ".aggregation.json", ".txt")
TEST_SUFFIXES = ("_vh_clean_2.ply", "_vh_clean_2.0.010000.segs.json", ".txt")  # no labels for test


@dataclass(frozen=True)
class ScanNetConfig:
    accept_terms: bool  # must be true: you agreed to the ScanNet Terms of Use and were given a URL
    base_url: str  # folder holding v2/; "" -> environment variable BEEP3D_SCANNET_URL
    splits: tuple[str, ...]  # subset of ("train", "val", "test")
    scenes: tuple[str, ...]  # explicit scene ids; empty = every scene of the splits
    max_scenes: int  # 0 = no limit; else the first N (sorted) of each split, to try the pipeline
    workers: int  # parallel downloads
    retries: int  # extra attempts per file after the first
    timeout_s: float  # socket timeout per connect / read


class DownloadError(DataError):
    """A file could not be downloaded or did not verify; names the scene and file."""


@dataclass(frozen=True)
class _Job:
    rel_url: str  # below <base>/v2/
    dest: Path
    scene_id: str | None


def _check_config(cfg: ScanNetConfig) -> None:
    if not cfg.accept_terms:
        raise ConfigError(
            "ScanNet v2 may only be downloaded after agreeing to the ScanNet Terms of Use "
            f"({TERMS_URL}; request access as described at https://github.com/ScanNet/ScanNet). "
            "Once you have agreed and received a download URL, set data.scannet.accept_terms: true."
        )
    if not cfg.splits or len(set(cfg.splits)) != len(cfg.splits) or set(cfg.splits) - set(SPLITS):
        raise ConfigError(f"params: 'data.scannet.splits' must be distinct items of {list(SPLITS)}")
    bad = [s for s in cfg.scenes if not SCENE_ID.match(s)]
    if bad:
        raise ConfigError(f"params: 'data.scannet.scenes' has ids not like scene0000_00: {bad[:5]}")
    for key, value, low in (("max_scenes", cfg.max_scenes, 0), ("workers", cfg.workers, 1)):
        if value < low:
            raise ConfigError(f"params: 'data.scannet.{key}' must be >= {low}, got {value}")
    if cfg.retries < 0 or cfg.timeout_s <= 0:
        raise ConfigError("params: 'data.scannet.retries' must be >= 0 and 'timeout_s' > 0")


def resolve_base_url(cfg: ScanNetConfig) -> str:
    """cfg.base_url, else $BEEP3D_SCANNET_URL; checked to be an http(s) URL with a host."""
    url = cfg.base_url.strip() or os.environ.get(ENV_URL, "").strip()
    if not url:
        raise ConfigError(
            f"no ScanNet base URL: set the environment variable {ENV_URL} (preferred when the URL "
            "holds credentials) or data.scannet.base_url to the folder that holds v2/ on the server "
            "you were given access to"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError("ScanNet base URL must look like https://host/path (userinfo/query allowed)")
    return url


def _split_list(split: str, base: str, out_dir: Path, policy: FetchPolicy, stats: _Stats) -> list[str]:
    name = f"scannetv2_{split}.txt"
    local = os.environ.get(ENV_SPLITS, "").strip()
    path = Path(local) / name if local else out_dir / SPLIT_CACHE / name
    if local and not path.is_file():
        raise DownloadError(f"{ENV_SPLITS} is set but holds no {name}", path=path)
    if not path.exists():
        stats.fetch(_Job(f"splits/{name}", path, None), base, policy, verify_split_list)
    try:
        return parse_split_list(read_text(path))
    except VerificationError as err:
        raise DownloadError(f"bad split list: {err}", path=path) from None


def _select(cfg: ScanNetConfig, lists: dict[str, list[str]]) -> dict[str, list[str]]:
    """Scene ids per split: the listed scenes, narrowed to cfg.scenes, then to the first max_scenes."""
    wanted = set(cfg.scenes)
    missing = wanted - {s for ids in lists.values() for s in ids}
    if missing:
        raise ConfigError(
            f"params: 'data.scannet.scenes' {sorted(missing)[:5]} are in none of the split lists "
            f"of {list(cfg.splits)}"
        )
    chosen = {}
    for split, ids in lists.items():
        ids = sorted(set(ids) & wanted) if wanted else sorted(set(ids))
        chosen[split] = ids[: cfg.max_scenes] if cfg.max_scenes else ids
    return chosen


def _marker_ok(scene_dir: Path, names: list[str]) -> bool:
    """True when `.complete` lists exactly `names` with the sizes the files have now."""
    try:
        recorded = json.loads((scene_dir / MARKER).read_text(encoding="utf-8"))["files"]
        return sorted(recorded) == sorted(names) and all(
            (scene_dir / n).stat().st_size == recorded[n] for n in names
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _is_verified(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        verify_by_name(path)
        return True
    except VerificationError as err:
        log.warning("%s fails verification (%s); fetching it again", path, err)
        path.unlink()
        return False


class _Stats:
    """Counters shared by the worker threads, and the byte progress bar."""

    def __init__(self, bar: tqdm):
        self.bar = bar
        self.lock = threading.Lock()
        self.bytes = self.fetched = self.retries = 0

    def on_bytes(self, n: int) -> None:
        with self.lock:
            self.bytes += n
            self.bar.update(n)

    def fetch(
        self, job: _Job, base: str, policy: FetchPolicy, verify: Callable[[Path], None] = verify_by_name
    ) -> None:
        url = join_url(base, f"v2/{job.rel_url}")
        try:
            retries = fetch_file(url, job.dest, policy, verify=verify, on_bytes=self.on_bytes)
        except FetchError as err:
            raise DownloadError(f"download failed: {err}", path=job.dest, scene_id=job.scene_id) from None
        with self.lock:
            self.fetched += 1
            self.retries += retries


def _run_jobs(jobs: list[_Job], base: str, policy: FetchPolicy, workers: int, stats: _Stats) -> None:
    """Fetch all jobs in parallel; stop starting new ones after the first failure, then raise it.

    Stopping early keeps a dead server or a wrong URL from costing every file its full retries;
    files already in flight finish (or keep their `.part` for the next run).
    """
    done = 0
    failure: DownloadError | None = None
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scannet")
    try:
        futures = {pool.submit(stats.fetch, job, base, policy): job for job in jobs}
        for fut in as_completed(futures):
            if fut.cancelled():
                continue
            try:
                fut.result()
                done += 1
            except DownloadError as err:
                if failure is None:
                    failure = err
                    for other in futures:
                        other.cancel()
            stats.bar.set_postfix_str(f"{done}/{len(jobs)} files", refresh=False)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if failure is not None:
        raise failure


def download_scannet(
    cfg: ScanNetConfig, out_dir: Path, progress: bool = True, *, backoff_s: float = 1.0
) -> dict:
    """Fetch the selected ScanNet v2 scenes into `out_dir`; skip what is already complete.

    `backoff_s` is the first retry delay (doubling per retry). Returns a summary:
    {"base_url" (redacted), "out_dir", "scenes", "scenes_per_split", "scenes_skipped",
     "files_fetched", "files_skipped", "bytes" (transferred this run), "retries"}.
    Raises ConfigError for bad settings and DownloadError (scene + file named) when a file
    cannot be fetched or never verifies.
    """
    _check_config(cfg)
    base = resolve_base_url(cfg)
    out_dir = Path(out_dir)
    policy = FetchPolicy(retries=cfg.retries, timeout_s=cfg.timeout_s, backoff_s=backoff_s)
    with tqdm(desc="ScanNet v2", unit="B", unit_scale=True, unit_divisor=1024, disable=not progress) as bar:
        stats = _Stats(bar)
        chosen = _select(cfg, {s: _split_list(s, base, out_dir, policy, stats) for s in cfg.splits})
        jobs: list[_Job] = []
        skipped_files = 0
        if not _is_verified(out_dir / LABELS_TSV):
            jobs.append(_Job(f"tasks/{LABELS_TSV}", out_dir / LABELS_TSV, None))
        else:
            skipped_files += 1
        scene_files: dict[Path, list[str]] = {}
        complete_before = 0
        for split, scenes in chosen.items():
            sub, suffixes = ("scans_test", TEST_SUFFIXES) if split == "test" else ("scans", SCAN_SUFFIXES)
            for scene in scenes:
                scene_dir = out_dir / sub / scene
                names = [scene + suffix for suffix in suffixes]
                scene_files[scene_dir] = names
                if _marker_ok(scene_dir, names):
                    complete_before += 1
                    skipped_files += len(names)
                    continue
                for name in names:
                    if _is_verified(scene_dir / name):
                        skipped_files += 1
                    else:
                        jobs.append(_Job(f"{sub}/{scene}/{name}", scene_dir / name, scene))
        log.info("ScanNet v2 from %s: %d files to fetch, %d present", redact(base), len(jobs), skipped_files)
        try:
            _run_jobs(jobs, base, policy, cfg.workers, stats)
        finally:
            # Also after a failure: every scene whose files all made it is recorded as complete.
            for scene_dir, names in scene_files.items():
                if all((scene_dir / n).is_file() for n in names) and not _marker_ok(scene_dir, names):
                    sizes = {n: (scene_dir / n).stat().st_size for n in names}
                    write_json_atomic(scene_dir / MARKER, {"files": sizes})
    for split, scenes in chosen.items():
        write_text_atomic(out_dir / f"scannetv2_{split}.txt", "".join(s + "\n" for s in scenes))
    summary = {
        "base_url": redact(base),
        "out_dir": str(out_dir),
        "scenes": sum(len(s) for s in chosen.values()),
        "scenes_per_split": {split: len(s) for split, s in chosen.items()},
        "scenes_skipped": complete_before,
        "files_fetched": stats.fetched,
        "files_skipped": skipped_files,
        "bytes": stats.bytes,
        "retries": stats.retries,
    }
    log.info("ScanNet v2 download done: %s", summary)
    return summary
