"""Local raw-data sources for the download stage: an S3DIS zip or folder, a ScanNet-layout folder.

Both materialise the data under the stage's output folder so that later stages only ever read
`data/raw/`. Nothing is half-written: the S3DIS tree is built in a hidden temp folder beside its
final place and renamed in at the end; local ScanNet files are placed one atomic rename at a time.

Files are hard-linked where the filesystem allows it (no extra disk space, and the copy stays
valid if the source is later moved or deleted) and copied otherwise (another filesystem, or a
file the user may not link). Raw files are never written in place by any stage, so sharing the
inode with the user's source is safe.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import uuid
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from beep3d.data.s3dis import AREA_RE, S3DIS_ROOT_NAME, list_rooms
from beep3d.data.scannet import LABEL_MAP_NAME, SPLITS, read_label_map, read_splits, scene_files, split_file
from beep3d.errors import DataError
from beep3d.io import atomic_path, make_temp_dir

log = logging.getLogger(__name__)

PARTIAL_PREFIX = f".{S3DIS_ROOT_NAME}.partial-"  # a tree being built; stale ones are removed
OLD_PREFIX = f".{S3DIS_ROOT_NAME}.old-"  # a tree being replaced; stale ones are removed
_SHOW = 5  # how many missing paths an error message lists before the count
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_COPY_CHUNK = 1 << 20


# ----------------------------------------------------------------------------- S3DIS


def prepare_s3dis(source: Path, out_dir: Path) -> Path:
    """Materialise S3DIS as `out_dir/Stanford3dDataset_v1.2_Aligned_Version` and return that path.

    `source` is the release zip, or a folder that is or contains that folder. A zip is extracted
    safely (members escaping the target, absolute paths and symlinks are refused before anything
    is written); a folder is hard-linked file by file (copied across filesystems). Either way the
    tree is built in a temp folder beside the target and renamed into place only once it is
    complete and looks like S3DIS, so a killed run leaves no half tree and a re-run starts clean.
    An existing target is replaced (the source is the truth; DVC re-runs only when it changed).
    """
    source, out_dir = Path(source), Path(out_dir)
    if not source.exists():
        raise DataError("S3DIS source not found: give the release zip or its extracted folder", path=source)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / S3DIS_ROOT_NAME
    _remove_stale(out_dir)
    if source.is_dir():
        src_root = _dataset_folder(source)
        if target.exists() and src_root.resolve() == target.resolve():
            list_rooms(target)  # the source already is the output
            return target
    elif not zipfile.is_zipfile(source):
        raise DataError(
            "S3DIS source is neither a folder nor a readable zip archive (truncated download?)", path=source
        )
    tmp = make_temp_dir(out_dir, PARTIAL_PREFIX)
    try:
        if source.is_dir():
            if tmp.resolve().is_relative_to(src_root.resolve()):
                raise DataError("the output folder lies inside the S3DIS source folder", path=source)
            _link_tree(src_root, tmp)
        else:
            _extract_zip(source, tmp)
        try:
            list_rooms(tmp)
        except DataError as err:
            raise DataError(f"source does not hold the S3DIS layout: {err.reason}", path=source) from err
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _remove_stale(out_dir: Path) -> None:
    """Delete temp trees a killed earlier run left behind (they are never complete data)."""
    for entry in out_dir.iterdir():
        if entry.name.startswith((PARTIAL_PREFIX, OLD_PREFIX)):
            log.info("removing leftover %s", entry)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def _swap_into_place(tmp: Path, target: Path) -> None:
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        old = target.with_name(f"{OLD_PREFIX}{uuid.uuid4().hex[:8]}")
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old)
        return
    tmp.rename(target)


def _dataset_folder(source: Path) -> Path:
    """The folder holding Area_<k>: `source` itself or its Stanford3dDataset_v1.2_Aligned_Version."""
    if (source / S3DIS_ROOT_NAME).is_dir():
        return source / S3DIS_ROOT_NAME
    if any(p.is_dir() and AREA_RE.match(p.name) for p in source.iterdir()):
        return source
    raise DataError(f"folder is not {S3DIS_ROOT_NAME} and does not contain it", path=source)


def _link_tree(src_root: Path, dst: Path) -> None:
    """Hard-link (else copy) every file under src_root into dst, following symlinked folders once."""
    seen: set[tuple[int, int]] = set()
    n_linked = n_copied = 0
    for folder, dirnames, filenames in os.walk(src_root, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:  # a symlink loop or a folder reached twice
            dirnames.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        rel = Path(folder).relative_to(src_root)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            src = Path(folder) / name
            try:
                os.link(src, dst / rel / name)
                n_linked += 1
            except OSError:
                try:
                    shutil.copyfile(src, dst / rel / name)
                except OSError as err:
                    raise DataError(f"cannot copy S3DIS file: {err}", path=src) from err
                n_copied += 1
    log.info("S3DIS folder: %d files hard-linked, %d copied", n_linked, n_copied)


def _check_member(info: zipfile.ZipInfo, archive: Path) -> None:
    """Refuse any member that could write outside the extraction folder or is not a plain file."""
    name = info.filename
    parts = PurePosixPath(name).parts
    if name.startswith("/") or _DRIVE_RE.match(name):
        raise DataError(f"archive member {name!r} has an absolute path; refusing to extract", path=archive)
    if ".." in parts or "\\" in name or "\x00" in name:
        raise DataError(
            f"archive member {name!r} would escape the target folder; refusing to extract", path=archive
        )
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DataError(f"archive member {name!r} is a symbolic link; refusing to extract", path=archive)
    # Archivers that record no file type (Windows, Python's writestr) leave S_IFMT at 0: a plain file.
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise DataError(f"archive member {name!r} is not a plain file or folder", path=archive)


def _archive_prefix(names: list[str], archive: Path) -> str:
    """Member-name prefix of the dataset folder: '' if Area_<k> sits at the top of the archive."""
    prefixes = set()
    for name in names:
        parts = PurePosixPath(name).parts
        if parts and parts[0] == "__MACOSX":  # macOS resource forks, not data
            continue
        if S3DIS_ROOT_NAME in parts:
            prefixes.add("/".join(parts[: parts.index(S3DIS_ROOT_NAME) + 1]) + "/")
    if len(prefixes) > 1:
        raise DataError(
            f"archive holds {len(prefixes)} copies of {S3DIS_ROOT_NAME}: {sorted(prefixes)}", path=archive
        )
    if prefixes:
        return prefixes.pop()
    if any(AREA_RE.match(PurePosixPath(name).parts[0]) for name in names if PurePosixPath(name).parts):
        return ""
    raise DataError(f"archive contains neither {S3DIS_ROOT_NAME}/ nor Area_<k>/ folders", path=archive)


def _extract_zip(archive: Path, dst: Path) -> None:
    dst_real = dst.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:  # every member is checked before anything is written
                _check_member(info, archive)
            prefix = _archive_prefix([m.filename for m in members], archive)
            selected = [m for m in members if m.filename.startswith(prefix) and m.filename != prefix]
            need = sum(m.file_size for m in selected)
            free = shutil.disk_usage(dst).free
            if need > free:
                raise DataError(
                    f"extracting needs {need / 1e9:.1f} GB but only {free / 1e9:.1f} GB is free in {dst.parent}",
                    path=archive,
                )
            for info in selected:
                out = dst / info.filename[len(prefix) :]
                if not out.resolve().is_relative_to(dst_real):  # checked above; kept as a last guard
                    raise DataError(f"archive member {info.filename!r} escapes the target", path=archive)
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                # "xb": a name listed twice in the archive is an error, not a silent overwrite.
                with zf.open(info) as src, open(out, "xb") as fh:
                    shutil.copyfileobj(src, fh, _COPY_CHUNK)
    except FileExistsError as err:
        raise DataError(f"archive member clashes with another member: {err.filename}", path=archive) from err
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, OSError) as err:
        # RuntimeError: encrypted member; NotImplementedError: unsupported compression.
        raise DataError(f"corrupt or unreadable zip archive: {err}", path=archive) from err


# ----------------------------------------------------------------------------- local ScanNet layout


def validate_scannet_root(root: Path) -> list[str]:
    """Check a ScanNet-layout folder and return its scene ids (sorted).

    Needs the label tsv, at least one split file that lists a scene (scannetv2_{train,val,test}.txt;
    a missing one is an empty split, see `split_notes`), valid scene ids, and every file of every
    listed scene (4 for train/val, 3 for test: no aggregation).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError("ScanNet-layout folder not found", path=root)
    read_label_map(root / LABEL_MAP_NAME)
    splits = read_splits(root)
    if not splits:
        names = ", ".join(split_file(Path(), s).name for s in SPLITS)
        raise DataError(f"no split file lists a scene: put the scene ids in {names}", path=root)
    missing = [
        str(path)
        for scene_id, split in sorted(splits.items())
        for path in scene_files(root, scene_id, split).values()
        if not path.is_file()
    ]
    if missing:
        shown = ", ".join(missing[:_SHOW]) + (", ..." if len(missing) > _SHOW else "")
        raise DataError(f"{len(missing)} scene file(s) missing: {shown}", path=root)
    return sorted(splits)


def split_notes(root: Path) -> list[str]:
    """What a ScanNet-layout folder without training or val scenes can be used for, in words."""
    counts = {s: 0 for s in SPLITS}
    for split in read_splits(root).values():
        counts[split] += 1
    notes = []
    if counts["train"] == 0:
        notes.append(
            f"no training scenes ({split_file(root, 'train').name} missing or empty): the data can "
            "evaluate an existing model (python -m stages.evaluate --model ...), not train one"
        )
    if counts["val"] == 0:
        notes.append(
            f"no val scenes ({split_file(root, 'val').name} missing or empty): training runs without "
            "evaluations, and the evaluate stage has nothing to score (use `dvc repro train`)"
        )
    return notes


def link_or_copy_local(source: Path, out_dir: Path) -> list[str]:
    """The `local` source: validate `source`, then place its files under `out_dir` in the same layout.

    Each file is hard-linked (else copied) to a temp name and renamed into place, so a killed run
    leaves only whole files; a file already linked to its source is left alone, so re-runs are cheap.
    Returns the scene ids.
    """
    source, out_dir = Path(source), Path(out_dir)
    scene_ids = validate_scannet_root(source)
    splits = read_splits(source)
    rel_paths = [Path(LABEL_MAP_NAME)]
    rel_paths += [split_file(Path(), s) for s in SPLITS if split_file(source, s).is_file()]
    for scene_id in scene_ids:
        rel_paths += scene_files(Path(), scene_id, splits[scene_id]).values()
    n_linked = 0
    for rel in rel_paths:
        n_linked += _place_file(source / rel, out_dir / rel)
    log.info(
        "local source: %d files, %d hard-linked, %d copied",
        len(rel_paths),
        n_linked,
        len(rel_paths) - n_linked,
    )
    return scene_ids


def _place_file(src: Path, dst: Path) -> bool:
    """Atomically put `src` at `dst`; True if hard-linked, False if copied."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() and os.path.samefile(src, dst):
        return True
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        os.link(src, tmp)
        os.replace(tmp, dst)
        return True
    except OSError:
        tmp.unlink(missing_ok=True)
    try:
        with atomic_path(dst) as part:
            shutil.copyfile(src, part)
    except OSError as err:
        raise DataError(f"cannot copy into {dst}: {err}", path=src) from err
    return False
