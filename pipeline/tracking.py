"""MLflow tracking for the train stage, behind one small interface.

Policy choices, and why:

- Where runs go. The tracking URI is `MLFLOW_TRACKING_URI` when set, else `mlflow.db` in the
  project root, and a sqlite path is always made absolute: `dvc exp run --queue` runs the stage in
  a temporary copy under `.dvc/tmp/exps/`, and a relative URI would record the run in that copy,
  which DVC deletes afterwards. For the same reason a sqlite store gets its artifact root set to
  `<project root>/mlartifacts` (absolute) when the experiment is created; MLflow's default is
  `./mlruns` of whatever the current directory is.
- One process sets up a new sqlite store. `MlflowClient` creates the tables of a store that has
  none when it is constructed, without a lock: two queued experiments that open a new `mlflow.db`
  at once (`dvc queue start -j 2`) both run the schema migrations, and one fails with "duplicate
  column name". Every stage therefore gets its client from `open_client`, which constructs it
  under an exclusive lock on `<db>.lock` beside a sqlite store; later calls need no lock, as
  sqlite serialises its own writes.
- No global MLflow state. `Tracker` talks to one `MlflowClient` for one run; it never calls
  `mlflow.start_run` or `mlflow.set_tracking_uri`, so a test or a notebook that also uses MLflow
  cannot pick up or end this run by accident.
- Failing before vs. during training. `Tracker.start` raises `TrackingError` naming the URI: at
  that point no training has happened, and the caller decides whether an untracked run is
  acceptable. Once the run has started, a tracking failure (store deleted, disk full, server down)
  never stops training or its checkpoints: the failed call is dropped and counted, a warning names
  the URI and the error at the first failure of an outage and then every 100 failures, and every
  later call tries again because the store may come back (which is reported too).
- No credentials in the store. Params pass through `redact_params` inside the tracker itself, so a
  caller cannot forget it: URLs lose user info, query and fragment, and values under
  secret-looking keys become "***". Tag values get the same URL cleaning.
- MLflow is imported on first use, not with this module: importing `mlflow` starts its telemetry
  client, so a caller has the chance to set `MLFLOW_DISABLE_TELEMETRY` first, and the path and tag
  helpers here stay cheap to import.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pipeline.gitinfo import run_git

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

# MLflow's limits (mlflow.utils.validation), repeated here so values are cut with a visible note
# instead of MLflow's silent truncation or a rejected batch.
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000

RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
WARN_EVERY = 100  # during an outage, one warning at its first failed call and then per this many


class TrackingError(RuntimeError):
    """The tracking store cannot be used; the message names the URI and what failed."""


def project_root_of(cwd: Path) -> Path:
    """The project whose mlflow.db a stage running in `cwd` should use.

    `dvc exp run --queue` (and `--temp`) runs the stage in a throwaway copy at
    `<project>/.dvc/tmp/exps/<dir>/...`; runs recorded in that copy would vanish with it, so the
    project above `.dvc` is returned instead. Anywhere else `cwd` itself is the project root.
    """
    cwd = cwd.resolve()
    parts = cwd.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd


def resolve_tracking_uri(project_root: Path, env: Mapping[str, str] | None = None) -> str:
    """MLFLOW_TRACKING_URI from `env` (os.environ when None) if set and non-empty, else
    `sqlite:///<absolute project root>/mlflow.db`.

    A relative sqlite path (`sqlite:///mlflow.db`) is made absolute against `project_root`, since
    queued DVC experiments run in a temporary copy of the project; other schemes (http://, file:,
    postgresql://, in-memory sqlite) pass through unchanged.
    """
    env = os.environ if env is None else env
    uri = env.get("MLFLOW_TRACKING_URI", "").strip()
    root = project_root.resolve()
    if not uri:
        return f"sqlite:///{root / 'mlflow.db'}"
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path, sep, query = uri[len(prefix) :].partition("?")
        if path and path != ":memory:" and not Path(path).is_absolute():
            return f"{prefix}{(root / path).resolve()}{sep}{query}"
    return uri


def default_artifact_root(tracking_uri: str, project_root: Path) -> str | None:
    """`<project root>/mlartifacts` as a file URI for a sqlite store (beside the default
    mlflow.db); None for other stores, where the server chooses its own artifact location."""
    if tracking_uri.startswith("sqlite:"):
        return (project_root / "mlartifacts").resolve().as_uri()
    return None


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    experiment_id: str
    run_name: str
    tracking_uri: str

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (None for other stores and in-memory sqlite)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    path = tracking_uri[len(prefix) :].partition("?")[0]
    return None if path in ("", ":memory:") else Path(path)


def open_client(tracking_uri: str) -> MlflowClient:
    """An `MlflowClient` on the store, constructed (which creates a new store's tables) under an
    exclusive lock on `<db>.lock` for a `sqlite:///` store with a path: see "One process sets up a
    new sqlite store" above.

    The lock is `flock` on a file of its own, never on the database, whose locking belongs to
    sqlite; the kernel releases it when the process dies, so a killed training leaves no stale lock.
    """
    from mlflow.tracking import MlflowClient

    db = sqlite_path(tracking_uri)
    if db is None:
        return MlflowClient(tracking_uri=tracking_uri)
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file closes
        return MlflowClient(tracking_uri=tracking_uri)


RUN_KEY_TAG = "run_key"


@dataclass(frozen=True)
class RunKey:
    """How later stages find a training's MLflow run: the experiment and the run's `run_key` tag.

    The train stage writes this (reports/mlflow_run.json) instead of the run's id, because MLflow
    draws a new random id for every run and the store's path differs per clone: a file holding
    either would change on every `dvc repro` of the same params, and with it dvc.lock. The key is
    the training fingerprint (params + data), so the same inputs give the same file, and the run is
    the latest one of the experiment carrying the key in the store the stage resolves at run time
    (`resolve_tracking_uri`). The latest is the right one in a pipeline: evaluate and report run
    right after their train stage, and a train stage DVC restored from its cache leads to the run
    that produced those very outputs.
    """

    experiment: str
    run_key: str

    def to_json(self) -> dict[str, str]:
        return {**dataclasses.asdict(self), "tag": RUN_KEY_TAG}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str) -> RunKey:
        try:
            return cls(experiment=str(data["experiment"]), run_key=str(data["run_key"]))
        except (KeyError, TypeError) as err:
            raise TrackingError(
                f"{source}: expected the train stage's run key {{experiment, run_key}}, got {data!r}"
            ) from err


def find_run(tracking_uri: str, key: RunKey) -> RunInfo | None:
    """The latest run of `key.experiment` tagged with `key.run_key`; None if there is none (or no
    store at a sqlite path: opening it would create an empty one). Raises TrackingError when the
    store cannot be read."""
    db = sqlite_path(tracking_uri)
    if db is not None and not db.is_file():
        return None
    try:
        client = open_client(tracking_uri)
        experiment = client.get_experiment_by_name(key.experiment)
        if experiment is None:
            return None
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.{RUN_KEY_TAG} = '{key.run_key}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    except Exception as err:
        raise TrackingError(f"MLflow tracking store {tracking_uri!r} unreadable: {_describe(err)}") from err
    if not runs:
        return None
    run = runs[0]
    return RunInfo(run.info.run_id, experiment.experiment_id, run.info.run_name or "", tracking_uri)


class Tracker:
    """One MLflow run, through `MlflowClient` only (no fluent `mlflow.start_run` state).

    `start` raises `TrackingError`; every later call follows the failure policy in the module
    docstring. Used as a context manager, the run ends FAILED when an exception escapes the block,
    KILLED on KeyboardInterrupt and FINISHED otherwise.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        artifact_root: str | None,
        log: Callable[[str], None] = print,
    ):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.artifact_root = artifact_root
        self._log = log
        self._client: MlflowClient | None = None
        self._run: RunInfo | None = None
        self._ended = False
        self._dropped = 0
        self._outage_failures = 0  # failed calls since tracking last worked

    @property
    def dropped(self) -> int:
        """Number of tracking calls that failed (and were dropped) since `start`."""
        return self._dropped

    @property
    def run(self) -> RunInfo | None:
        return self._run

    def start(self, run_name: str | None, tags: dict[str, str], params: dict[str, Any]) -> RunInfo:
        """Create the run (in `experiment`, created if missing) with `tags`, and log all `params`.

        `params` is flat (the caller flattens nested config as "section.key"); values are logged
        with str(). A `run_name` of None lets MLflow generate one.
        """
        if self._run is not None:
            raise RuntimeError(f"Tracker.start called twice (run {self._run.run_id} already started)")
        step = "opening the store"
        run_id: str | None = None
        try:
            client = open_client(self.tracking_uri)
            step = f"getting or creating experiment {self.experiment!r}"
            experiment_id = self._experiment_id(client)
            step = "creating the run"
            run = client.create_run(experiment_id, tags=_tag_dict(tags), run_name=run_name)
            run_id = run.info.run_id
            step = f"logging {len(params)} params"
            self._log_params(client, run_id, params)
        except TrackingError:
            raise
        except Exception as err:
            if run_id is not None:  # do not leave a half-made run RUNNING forever in the UI
                try:
                    client.set_terminated(run_id, "FAILED")
                except Exception:
                    pass  # the store already failed once; the TrackingError below says why
            raise TrackingError(
                f"MLflow tracking store {self.tracking_uri!r} unavailable: {step} failed: {_describe(err)}"
            ) from err
        self._client = client
        self._run = RunInfo(
            run_id=run_id,
            experiment_id=experiment_id,
            run_name=run.info.run_name,
            tracking_uri=self.tracking_uri,
        )
        return self._run

    def attach(self, info: RunInfo) -> None:
        """Continue logging to an existing run (e.g. the evaluate stage adding its metrics to the
        training's run, found by the key in reports/mlflow_run.json). Later calls follow the
        failure policy."""
        if self._run is not None:
            raise RuntimeError(f"Tracker already holds run {self._run.run_id}")
        self._client = open_client(info.tracking_uri)
        self._run = info
        self._ended = True  # the run's status belongs to the stage that created it

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log `metrics` at `step` in as few calls as MLflow allows. Names are made valid for
        MLflow ("loss/aux0 bce" stays as is, "ap@50" becomes "ap_50"); NaN is logged as NaN."""
        from mlflow.entities import Metric

        def send() -> None:
            client, run_id = self._require_run()
            timestamp = int(time.time() * 1000)
            names = _unique_names(metrics)
            batch = [Metric(names[key], float(value), timestamp, int(step)) for key, value in metrics.items()]
            for chunk in _chunks(batch, MAX_METRICS_PER_BATCH):
                client.log_batch(run_id, metrics=chunk)

        self._guarded(f"log_metrics at step {step}", send)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Copy the file or directory `path` into the run's artifacts (under `artifact_path`)."""

        def send() -> None:
            client, run_id = self._require_run()
            client.log_artifact(run_id, str(path), artifact_path)

        self._guarded(f"log_artifact {path}", send, uses_store=False)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        def send() -> None:
            client, run_id = self._require_run()
            batch = [RunTag(key, value) for key, value in _tag_dict(tags).items()]
            for chunk in _chunks(batch, MAX_TAGS_PER_BATCH):
                client.log_batch(run_id, tags=chunk)

        self._guarded("set_tags", send)

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run FINISHED, FAILED or KILLED. Once that has succeeded, further calls do
        nothing; a failed attempt may be repeated. Without a started run there is nothing to end."""
        if status not in RUN_STATUSES:
            raise ValueError(f"run status {status!r}: expected one of {', '.join(RUN_STATUSES)}")
        if self._run is None or self._ended:
            return

        def send() -> None:
            client, run_id = self._require_run()
            client.set_terminated(run_id, status)
            self._ended = True

        self._guarded(f"end run as {status}", send)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.end("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end("KILLED")
        else:
            self.end("FAILED")

    def _experiment_id(self, client: MlflowClient) -> str:
        from mlflow.exceptions import MlflowException

        experiment = client.get_experiment_by_name(self.experiment)
        if experiment is None:
            try:
                return client.create_experiment(self.experiment, artifact_location=self.artifact_root)
            except MlflowException as err:
                # Queued DVC experiments may run in parallel: another one can create it first.
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = client.get_experiment_by_name(self.experiment)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage != "active":
            raise TrackingError(
                f"MLflow tracking store {self.tracking_uri!r}: experiment {self.experiment!r} "
                f"(id {experiment.experiment_id}) is deleted; restore it with "
                f"`mlflow experiments restore --experiment-id {experiment.experiment_id}` "
                "or choose another experiment name"
            )
        if self.artifact_root is not None and experiment.artifact_location != self.artifact_root:
            self._log(
                f"note: MLflow experiment {self.experiment!r} keeps the artifact location it was "
                f"created with ({experiment.artifact_location}), not {self.artifact_root}"
            )
        return experiment.experiment_id

    def _log_params(self, client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        safe = redact_params(params)
        names = _unique_names(safe)
        batch = []
        cut = []
        for key, value in safe.items():
            text = str(value)
            if len(text) > MAX_PARAM_VALUE_LENGTH:
                cut.append(key)
                text = _truncate(text, MAX_PARAM_VALUE_LENGTH)
            batch.append(Param(names[key], text))
        for chunk in _chunks(batch, MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=chunk)
        if cut:
            self._log(
                f"note: MLflow keeps at most {MAX_PARAM_VALUE_LENGTH} characters per param; "
                f"truncated: {', '.join(cut)}"
            )

    def _require_run(self) -> tuple[MlflowClient, str]:
        if self._client is None or self._run is None:
            raise RuntimeError("Tracker.start must succeed before logging to the run")
        return self._client, self._run.run_id

    def _guarded(self, what: str, send: Callable[[], None], *, uses_store: bool = True) -> None:
        """Run one tracking call under the failure policy. `uses_store` is False for artifact
        copies: they go to the artifact location, not the tracking store, so their success does
        not show that the store is back."""
        self._require_run()  # a call before start is a bug in the caller, not a store failure
        try:
            send()
        except Exception as err:
            self._dropped += 1
            self._outage_failures += 1
            if self._outage_failures % WARN_EVERY == 1:
                if self._outage_failures == 1:
                    tail = (
                        "training continues; failed tracking calls are dropped, each later call "
                        f"tries again, and this warning repeats every {WARN_EVERY} failures"
                    )
                else:
                    tail = f"still failing, {self._dropped} tracking calls dropped so far"
                self._log(
                    f"warning: MLflow tracking to {self.tracking_uri!r} failed ({what}): "
                    f"{_describe(err)}; {tail}"
                )
            return
        if self._outage_failures and uses_store:
            # A later outage is then warned about at its first failure again.
            self._outage_failures = 0
            self._log(
                f"MLflow tracking to {self.tracking_uri!r} works again; "
                f"{self._dropped} tracking calls dropped in this run so far"
            )


def run_tags(
    project_root: Path,
    mode: str,
    data_source: str,
    data_hash: str,
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Provenance tags for a run. Never raises: what cannot be found is "unknown" (git) or ""
    (DVC variables, dvc.lock).

    `git_dirty` compares tracked files with HEAD (untracked files are ignored); inside
    `dvc exp run` it is normally "true", because DVC writes the experiment's params before the
    stage runs. `dvc_lock_sha256` hashes dvc.lock as it stands when the stage starts (DVC rewrites
    it after the stage succeeds), which pins the inputs of the upstream stages.
    """
    env = os.environ if env is None else env
    commit = run_git(project_root, "rev-parse", "HEAD")
    if commit.returncode == 0 and commit.stdout.strip():
        git_commit = commit.stdout.strip()
    else:
        git_commit = "unknown"
    diff = run_git(project_root, "diff", "--quiet", "HEAD")
    git_dirty = {0: "false", 1: "true"}.get(diff.returncode, "unknown")
    try:
        lock_sha = hashlib.sha256((project_root / "dvc.lock").read_bytes()).hexdigest()
    except OSError:
        lock_sha = ""
    return {
        "git_commit": git_commit,
        "git_dirty": git_dirty,
        "dvc_baseline_rev": env.get("DVC_EXP_BASELINE_REV", ""),
        "dvc_exp_name": env.get("DVC_EXP_NAME", ""),
        "dvc_lock_sha256": lock_sha,
        "data_hash": data_hash,
        "mode": mode,
        "data_source": _redact_value(data_source),
    }


def run_name_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """DVC_EXP_NAME when set and non-empty (inside `dvc exp run`), else None so MLflow generates
    a name."""
    env = os.environ if env is None else env
    return env.get("DVC_EXP_NAME", "").strip() or None


# Key words that mark a credential. Matched against the parts of a key split at non-alphanumerics,
# so "hf_token" and "db.password" match while "query_pool_k" or "max_tokens" do not.
_SECRET_WORDS = frozenset({"key", "apikey", "token", "password", "passwd", "secret", "credentials"})
_SECRET_SUFFIXES = ("apikey", "token", "password", "secret")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>,()\[\]{}]+")


def redact_params(flat: dict[str, Any]) -> dict[str, Any]:
    """Params safe to log.

    A URL with user info, a query string or a fragment (`https://u:p@host/x?sig=...`) keeps only
    `scheme://host/path`, also inside lists and longer strings; a key that names a credential
    ("token", "password", "secret", "key", ...) gets "***" when its value is non-empty.
    Everything else is returned unchanged.
    """
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if _is_secret_key(key) and value not in (None, ""):
            out[key] = "***"
        else:
            out[key] = _redact_value(value)
    return out


def _is_secret_key(key: str) -> bool:
    parts = re.split(r"[^a-z0-9]+", str(key).lower())
    return any(part in _SECRET_WORDS or part.endswith(_SECRET_SUFFIXES) for part in parts)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return _URL.sub(_strip_url, value)
    if isinstance(value, list | tuple | set | dict):
        text = str(value)
        redacted = _URL.sub(_strip_url, text)
        return value if redacted == text else redacted
    return value


def _strip_url(match: re.Match[str]) -> str:
    url = match.group(0)
    try:
        parts = urlsplit(url)
    except ValueError:  # malformed (e.g. an unclosed IPv6 bracket): keep nothing of it
        return "<unparsable url>"
    if "@" not in parts.netloc and not parts.query and not parts.fragment:
        return url
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


_BAD_NAME_CHARS = re.compile(r"[^\w.\- :/]")  # what MLflow accepts in metric/param/tag keys


def _sanitise_name(name: str) -> str:
    """A key MLflow accepts: allowed characters only, and no path that normalises to another
    name ("a//b", "./a", "/a", "a/", "../a" are all refused by MLflow)."""
    clean = _BAD_NAME_CHARS.sub("_", str(name))
    parts = ["_" + part[1:] if part.startswith("..") else part for part in clean.split("/")]
    clean = "/".join(part for part in parts if part not in ("", "."))
    clean = clean[:MAX_KEY_LENGTH].rstrip("/")
    return clean or "_"


def _unique_names(keys: Iterable[str]) -> dict[str, str]:
    """Sanitised name for each key; two keys that sanitise alike get numbered suffixes instead of
    overwriting each other (or making MLflow reject a params batch with duplicate keys)."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for key in keys:
        name = _sanitise_name(key)
        base, n = name, 1
        while name in taken:
            suffix = f"_{n}"
            name = base[: MAX_KEY_LENGTH - len(suffix)] + suffix
            n += 1
        taken.add(name)
        names[key] = name
    return names


def _tag_dict(tags: Mapping[str, Any]) -> dict[str, str]:
    names = _unique_names(tags)
    out = {}
    for key, value in tags.items():
        text = str(_redact_value(value))
        out[names[key]] = _truncate(text, MAX_TAG_VALUE_LENGTH)
    return out


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    note = f"... [truncated from {len(text)} characters]"
    return text[: limit - len(note)] + note


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _describe(err: BaseException) -> str:
    """`Type: first line` of the innermost cause: SQLAlchemy and MLflow wrap the useful message
    ("attempt to write a readonly database") in several lines of SQL and advice."""
    root = err
    while root.__cause__ is not None:
        root = root.__cause__
    lines = [line.strip() for line in str(root).splitlines() if line.strip()]
    text = lines[0] if lines else repr(root)
    return f"{type(root).__name__}: {text[:500]}"
