"""Settings: one frozen dataclass, every field with a local-first default.

`Settings.from_env()` reads `KEEL_<FIELD>` (for example `KEEL_HOME`, `KEEL_STORE_URL`,
`KEEL_ARTIFACTS_URL`) and casts by field type. No other module reads `os.environ`.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from keel.errors import ConfigError

__all__ = ["Settings", "mask_password"]

_PREFIX = "KEEL_"
_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
# fsspec option names whose values are credentials: hidden in repr()
_SECRET_OPTION = re.compile(r"secret|password|token|key|credential", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    """Where a workspace keeps its metadata and artifacts, and how it behaves.

    >>> s = Settings(home=Path("/tmp/ws"))
    >>> s.resolved_store_url
    'sqlite:////tmp/ws/keel.db'
    """

    home: Path = Path(".keel")
    store_url: str = ""  # empty: SQLite at <home>/keel.db
    artifacts_url: str = ""  # empty: <home>/artifacts
    # fsspec storage options (JSON in env); left out of hash() because a dict cannot be hashed
    artifacts_options: dict[str, Any] = field(default_factory=dict, hash=False)
    author: str = ""  # empty: the OS user name
    log_level: str = "WARNING"
    metric_buffer_points: int = 5000  # metric points buffered per run before a batch write
    gc_grace_s: int = 3600  # keel gc keeps unreferenced blobs younger than this (writes in flight)
    # A running run whose process cannot be checked (another host, or no /proc) is marked killed
    # once its heartbeat (refreshed every 30 s while the process lives) is this old; a run created
    # over HTTP, which only its client's writes keep alive, once it had no write for `run_remote_timeout_s`.
    run_heartbeat_timeout_s: int = 600
    run_remote_timeout_s: int = 86400
    # Columns a table dataset may have (wide enough for gene-expression matrices); wider ones are
    # refused before they are parsed, since every column is profiled and stored.
    dataset_max_columns: int = 25_000
    server_host: str = "127.0.0.1"
    server_port: int = 8080
    # Extra names the server answers to in the Host header, comma-separated (loopback names and the
    # bound address are always accepted): anything else is refused, which stops DNS rebinding.
    server_allowed_hosts: str = ""
    # How often `keel serve` runs its background tick (due monitors, due retraining, queued jobs)
    server_tick_s: float = 10.0
    # SQLite's durability: 'normal' (WAL; a commit survives a crash of the application, not of the
    # OS) or 'full' (each commit is synced to disk, as MLflow does; slower).
    sqlite_synchronous: str = "normal"
    # The prediction log of `keel serve`: rows buffered in memory (a crash loses at most these;
    # past them, new rows are dropped and counted), seconds between writes, days kept (0: forever).
    predlog_buffer_rows: int = 10000
    predlog_flush_s: float = 2.0
    predlog_retention_days: int = 90
    # Answered predictions are appended to a write-ahead file under <home>/predlog before their ids
    # are returned ('on': they survive a crash of the server process), synced to disk in the background
    # at most every `predlog_wal_sync_ms` milliseconds (an OS crash loses at most that window; like
    # PostgreSQL's asynchronous commit, whose WAL writer flushes every 200 ms), and
    # replayed into the log at the next start. 'sync': each answer also waits for its sync (survives
    # an OS crash; costs the disk's sync latency). 'off': no write-ahead file (the buffer is lost in a crash).
    predlog_wal: str = "on"
    predlog_wal_sync_ms: float = 100.0
    # Jobs (retraining, batch scoring): 'local' runs them in background threads of the process that
    # claims them; 'ray' sends them to Ray (`ray_address`, empty: a local Ray instance).
    executor: str = "local"
    executor_workers: int = 2
    ray_address: str = ""
    # Generation (ws.genai.generate, POST /models/{name}/generate): the longest prompt in characters
    # and the most tokens one request may ask for (a CPU decodes ~1,000 tokens/s of the 4M preset).
    genai_max_prompt_chars: int = 8000
    genai_max_tokens: int = 1024

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home).expanduser())
        object.__setattr__(self, "log_level", str(self.log_level).upper())
        if self.metric_buffer_points < 1:
            raise ConfigError(
                f"metric_buffer_points (KEEL_METRIC_BUFFER_POINTS) must be >= 1, got {self.metric_buffer_points}"
            )
        if self.gc_grace_s < 0:
            raise ConfigError(f"gc_grace_s (KEEL_GC_GRACE_S) must be >= 0, got {self.gc_grace_s}")
        for name in ("run_heartbeat_timeout_s", "run_remote_timeout_s"):
            if getattr(self, name) < 60:  # a live run beats every 30 s: a shorter limit would kill live runs
                raise ConfigError(f"{name} (KEEL_{name.upper()}) must be >= 60 seconds, got {getattr(self, name)}")
        if self.dataset_max_columns < 1:
            raise ConfigError(
                f"dataset_max_columns (KEEL_DATASET_MAX_COLUMNS) must be >= 1, got {self.dataset_max_columns}"
            )
        if self.predlog_buffer_rows < 1:
            raise ConfigError(
                f"predlog_buffer_rows (KEEL_PREDLOG_BUFFER_ROWS) must be >= 1, got {self.predlog_buffer_rows}"
            )
        if not self.predlog_flush_s > 0:
            raise ConfigError(f"predlog_flush_s (KEEL_PREDLOG_FLUSH_S) must be > 0, got {self.predlog_flush_s}")
        if self.predlog_retention_days < 0:
            raise ConfigError(
                f"predlog_retention_days (KEEL_PREDLOG_RETENTION_DAYS) must be >= 0 (0 keeps everything), "
                f"got {self.predlog_retention_days}"
            )
        object.__setattr__(self, "sqlite_synchronous", str(self.sqlite_synchronous).lower())
        if self.sqlite_synchronous not in ("normal", "full"):
            raise ConfigError(
                f"sqlite_synchronous (KEEL_SQLITE_SYNCHRONOUS) must be 'normal' or 'full', got {self.sqlite_synchronous!r}"
            )
        object.__setattr__(self, "predlog_wal", str(self.predlog_wal).lower())
        if self.predlog_wal not in ("on", "sync", "off"):
            raise ConfigError(f"predlog_wal (KEEL_PREDLOG_WAL) must be 'on', 'sync' or 'off', got {self.predlog_wal!r}")
        if not self.predlog_wal_sync_ms >= 0:
            raise ConfigError(
                f"predlog_wal_sync_ms (KEEL_PREDLOG_WAL_SYNC_MS) must be >= 0, got {self.predlog_wal_sync_ms}"
            )
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"executor (KEEL_EXECUTOR) must be 'local' or 'ray', got {self.executor!r}")
        for name in ("genai_max_prompt_chars", "genai_max_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} (KEEL_{name.upper()}) must be >= 1, got {getattr(self, name)}")
        if self.executor_workers < 1:
            raise ConfigError(f"executor_workers (KEEL_EXECUTOR_WORKERS) must be >= 1, got {self.executor_workers}")
        if not self.server_tick_s > 0:
            raise ConfigError(f"server_tick_s (KEEL_SERVER_TICK_S) must be > 0, got {self.server_tick_s}")
        if not 0 <= self.server_port <= 65535:
            raise ConfigError(f"server_port (KEEL_SERVER_PORT) must be in 0..65535, got {self.server_port}")
        if len(self.author) > 128:  # the store keeps authors in 128-character columns
            raise ConfigError(f"author (KEEL_AUTHOR) must be at most 128 characters, got {len(self.author)}")
        if self.log_level not in _LOG_LEVELS:
            levels = ", ".join(_LOG_LEVELS)
            raise ConfigError(f"log_level (KEEL_LOG_LEVEL) must be one of {levels}, got {self.log_level!r}")

    def __repr__(self) -> str:
        # Settings end up in logs and tracebacks: never show a password or a cloud secret.
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "store_url":
                value = mask_password(value)
            elif f.name == "artifacts_options":
                value = _mask_options(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def resolved_store_url(self) -> str:
        """The SQLAlchemy URL of the metadata store."""
        if self.store_url:
            return self.store_url
        return f"sqlite:///{self.home.absolute() / 'keel.db'}"

    @property
    def resolved_artifacts_url(self) -> str:
        """The fsspec URL (or local path) of the artifact store."""
        if self.artifacts_url:
            return self.artifacts_url
        return str(self.home.absolute() / "artifacts")

    @property
    def resolved_author(self) -> str:
        if self.author:
            return self.author
        try:
            return getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (containers)
            return "unknown"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from `KEEL_*` variables; keyword overrides win over the environment."""
        env = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _cast(f.name, raw, hints[f.name])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_changes(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def mask_password(url: str) -> str:
    """`url` with the password of its user-info part replaced by '***'.

    >>> mask_password("postgresql://keel:s3cret@db:5432/keel")
    'postgresql://keel:***@db:5432/keel'
    """
    # The user-info ends at the last '@' before the path, so an unescaped '@' in a password is masked too.
    url = re.sub(r"^([^:/]+://[^:/@]*:)[^/]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url, flags=re.IGNORECASE)


def _mask_options(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: "***" if _SECRET_OPTION.search(str(k)) and not isinstance(v, dict) else _mask_options(v)
            for k, v in value.items()
        }
    return value


def _cast(name: str, raw: str, hint: Any) -> Any:
    var = _PREFIX + name.upper()
    text = str(hint)
    try:
        if hint is int or text == "int":
            return int(raw)
        if hint is float or text == "float":
            return float(raw)
        if hint is Path or "Path" in text:
            return Path(raw)
        if text.startswith("dict"):
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
            return value
    except ValueError as exc:
        kind = "a JSON object" if text.startswith("dict") else "a number" if hint is float else "an int"
        raise ConfigError(f"{var}={raw!r} is not {kind}") from exc
    return raw
