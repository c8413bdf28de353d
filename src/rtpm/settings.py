"""One typed Settings object, read from `RTPM_*` environment variables and `.env`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_PREFIX = "changeme"


def is_placeholder(value: str) -> bool:
    """A value `.env.example` ships (`changeme...`, also after `user:`), never a real secret."""
    return any(part.lower().startswith(PLACEHOLDER_PREFIX) for part in value.split(":"))


class LimitsSettings(BaseModel):
    """Validation limits for everything that is written. Each violation is a 4xx naming the field."""

    max_labels_per_series: int = Field(30, ge=1, description="Labels per series, __name__ excluded")
    max_label_name_length: int = Field(128, ge=1)
    max_label_value_length: int = Field(2048, ge=1)
    max_metric_name_length: int = Field(256, ge=1)
    max_help_length: int = Field(4096, ge=0)
    max_batch_items: int = Field(50_000, ge=1, description="Items in one batch request")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="Request body size, decompressed")
    max_past_seconds: float = Field(15 * 86400, gt=0, description="How old a timestamp may be")
    max_future_seconds: float = Field(600, ge=0, description="How far in the future a timestamp may be")
    max_points_per_series: int = Field(11_000, ge=1, description="Points one query may return per series")
    max_query_series: int = Field(10_000, ge=1, description="Series one query may touch")
    max_query_samples: int = Field(50_000_000, ge=1, description="Samples one query may load")


class WriteBufferSettings(BaseModel):
    max_pending_samples: int = Field(1_000_000, ge=1, description="Samples waiting for commit, at most")
    max_flush_samples: int = Field(200_000, ge=1, description="Samples written in one transaction, at most")
    flush_interval_seconds: float = Field(0.005, ge=0, description="Wait to gather more before a flush")
    retry_after_seconds: float = Field(1.0, gt=0)


class QuerySettings(BaseModel):
    """PromQL evaluation defaults (the limits on series and samples are in LimitsSettings)."""

    timeout_seconds: float = Field(120.0, gt=0, description="Longest a query may run; ?timeout= can lower it")
    lookback_delta_seconds: float = Field(300.0, gt=0, description="How far back an instant selector looks")
    subquery_step_seconds: float = Field(60.0, gt=0, description="Step of subqueries that give none")
    cache_enabled: bool = Field(True, description="Cache answers about the past (in Redis when redis_url is set)")
    cache_freshness_seconds: float = Field(
        300.0, ge=0, description="Ranges ending later than now minus this are never cached (data can still arrive)"
    )
    cache_max_entries: int = Field(10_000, ge=1, description="In-process cache: answers kept")
    cache_max_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="In-process cache: bytes kept")


class RateLimitSettings(BaseModel):
    """Moving-window budgets ("<count>/<second|minute|hour>"), per credential, or per client IP for
    anonymous requests. Kept in Redis when `redis_url` is set (shared by every process), else in memory."""

    enabled: bool = True
    ingest: str = Field("30000/minute", description="Push routes (metrics:write)")
    # Sized for a Grafana wall sharing one data-source key: 30 panels refreshing every 5 s for 10
    # viewers is 30 * 12 * 10 = 3,600 queries a minute; x2.5 leaves room for panels with two or
    # three queries and the label/series look-ups of template variables, rounded to 10,000.
    query: str = Field(
        "10000/minute",
        description="Read routes (metrics:read, alerts:read) and the open docs; "
        "30 panels x every 5 s x 10 viewers = 3,600/min, with headroom",
    )
    admin: str = Field("300/minute", description="Admin and alerts:write routes, login, refresh")
    anonymous: str = Field("600/minute", description="Requests without a valid credential, per client IP")
    login_per_user: str = Field("5/minute", description="Failed logins per (user name, client IP)")
    login_per_ip: str = Field("30/minute", description="Failed logins per client IP")


class AuthSettings(BaseModel):
    """Authentication (JWT for users, API keys for agents), CORS and rate limits."""

    enabled: bool = Field(True, description="false: every caller is an admin of the default tenant (development)")
    jwt_secret: SecretStr | None = Field(
        None,
        description="HS* signing secret, >= 32 random bytes; unset in development: generated in data_dir",
        json_schema_extra={"placeholder": "changeme-generate-with-python-secrets-token-urlsafe-48"},
    )
    jwt_algorithm: Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512"] = "HS256"
    jwt_private_key_path: Path | None = Field(None, description="PEM private key, for RS* algorithms")
    jwt_public_key_path: Path | None = Field(None, description="PEM public key, for RS* algorithms")
    jwt_issuer: str = "rtpm"
    access_token_ttl_seconds: float = Field(1800, gt=0)
    refresh_token_ttl_seconds: float = Field(7 * 86400, gt=0)
    admin_username: str = Field("admin", min_length=1)
    api_key_cache_seconds: float = Field(5.0, ge=0, description="How long a checked API key is trusted")
    public_metrics: bool = Field(True, description="/metrics (self-monitoring) open without a credential")
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS; none by default")
    cors_allow_credentials: bool = False
    trust_forwarded_for: bool = Field(False, description="Take the client IP from X-Forwarded-For (behind a proxy)")
    anonymous_role: Literal["viewer", "editor"] | None = Field(
        None,
        description="Opt-in, for demos and the original RTPM API's clients: requests WITHOUT a credential act as "
        "this role (viewer: read; editor: read and write metrics and alerts, never admin) in anonymous_tenant; "
        "a credential that is sent is still checked. Off by default; a warning is printed at start",
    )
    anonymous_tenant: str | None = Field(None, description="Tenant of anonymous callers; default: default_tenant")
    rate_limit: RateLimitSettings = RateLimitSettings()

    @model_validator(mode="after")
    def _check_cors(self) -> AuthSettings:
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise ValueError("auth.cors_origins: '*' cannot be combined with cors_allow_credentials; list the origins")
        return self


class MaintenanceSettings(BaseModel):
    """Background jobs: compaction into compressed chunks, rollups, retention."""

    chunk_window_seconds: int = Field(7200, ge=60, description="Time window of one compressed chunk")
    compaction_age_seconds: float = Field(7200, ge=0, description="Raw samples older than this are compacted")
    late_grace_seconds: float = Field(300, ge=0, description="Samples older than this when written are 'late'")
    safety_seconds: float = Field(60, ge=0, description="Margin for commits in flight and clock skew")
    compaction_interval_seconds: float = Field(300, gt=0)
    rollup_interval_seconds: float = Field(60, gt=0)
    retention_interval_seconds: float = Field(3600, gt=0)
    lease_seconds: float = Field(30, gt=0, description="Leader lease of the embedded job runner")
    retention_raw_days: float = Field(15, gt=0, description="Raw samples and chunks")
    retention_1m_days: float = Field(30, gt=0)
    retention_5m_days: float = Field(90, gt=0)
    retention_1h_days: float = Field(365, gt=0)
    retention_1d_days: float = Field(5 * 365, gt=0)
    celery_broker_url: str | None = Field(None, description="Celery broker; default: redis_url")
    task_time_limit_seconds: float = Field(
        600, gt=0, description="Longest a maintenance task may run (it is also cut at its own interval)"
    )
    worker_shutdown_seconds: float = Field(
        20,
        gt=0,
        description="On SIGTERM a worker lets running tasks finish this long, then cancels them (they run "
        "again elsewhere); keep it below the orchestrator's grace period",
    )


class RealtimeSettings(BaseModel):
    """Live updates over WebSocket (`/ws/metrics`): batching, per-connection bounds, caps, keepalive."""

    batch_interval_seconds: float = Field(0.05, gt=0, le=0.1, description="Updates are sent in batches this often")
    queue_max_series: int = Field(1000, ge=1, description="Series waiting per connection; past it updates drop")
    queue_max_alerts: int = Field(100, ge=1, description="Alert events waiting per connection; oldest drop")
    lag_close_seconds: float = Field(10.0, gt=0, description="A client behind this long is closed with 1013")
    max_connections: int = Field(20_000, ge=1, description="Open WebSocket connections per process")
    max_connections_per_credential: int = Field(1000, ge=1, description="Per API key / user (per IP when anonymous)")
    max_subscriptions_per_connection: int = Field(32, ge=1)
    max_matchers_per_subscription: int = Field(16, ge=0)
    max_metric_names_per_subscription: int = Field(100, ge=1)
    max_message_bytes: int = Field(65_536, ge=256, description="Largest client message")
    idle_ping_seconds: float = Field(20.0, gt=0, description="Ping a connection this often (protocol ping)")
    idle_timeout_seconds: float = Field(20.0, gt=0, description="Close it when the pong takes longer")
    compression: bool = Field(False, description="permessage-deflate (costs ~40 KiB and CPU per connection)")
    subscribe_on_connect: bool = Field(
        False,
        description="Subscribe every new connection to all metrics of its tenant, as the original RTPM API "
        "streamed to every client without a subscribe message (its k6 script and tests)",
    )
    publish_queue_max_samples: int = Field(1_000_000, ge=1, description="Committed samples waiting to be published")
    match_cache_max_series: int = Field(200_000, ge=1, description="Series whose subscribers are remembered")
    redis_reconnect_max_seconds: float = Field(5.0, gt=0, description="Longest wait between Redis reconnects")


class WebhookReceiverSettings(BaseModel):
    url: str = Field(description="Where webhook notifications are POSTed (Alertmanager's v4 payload)")
    secret: SecretStr | None = Field(None, description="Signs the body: X-RTPM-Signature-256: sha256=<HMAC hex>")


class AlertingSettings(BaseModel):
    """Alert rule evaluation and notification delivery."""

    evaluation_enabled: bool = Field(True, description="Evaluate rules in this process (one leader per database)")
    default_interval_seconds: float = Field(60.0, gt=0, description="A rule's evaluation interval when it sets none")
    poll_seconds: float = Field(0.5, gt=0, description="How often the evaluator looks for rules that are due")
    lease_seconds: float = Field(15.0, gt=0, description="Leader lease (SQLite); a dead leader is replaced after it")
    resend_delay_seconds: float = Field(60.0, gt=0, description="Re-send firing alerts to Alertmanager this often")
    notify_queue_size: int = Field(1000, ge=1, description="Notification batches waiting per receiver")
    notify_timeout_seconds: float = Field(10.0, gt=0, description="One delivery attempt, at most")
    notify_max_attempts: int = Field(5, ge=1)
    notify_backoff_seconds: float = Field(0.5, gt=0, description="First retry delay; doubles per attempt")
    notify_backoff_max_seconds: float = Field(30.0, gt=0)
    alertmanager_urls: list[str] = Field(default_factory=list, description="Alertmanagers to POST /api/v2/alerts to")
    webhooks: dict[str, WebhookReceiverSettings] = Field(
        default_factory=dict, description='Webhook receivers by name: {"ops": {"url": ..., "secret": ...}}'
    )
    external_url: str | None = Field(None, description="Base URL in generatorURL links; default http://host:port")
    evaluation_timeout_seconds: float = Field(
        10.0, gt=0, description="One rule evaluation at most (and at most half the rule's interval); then abandoned"
    )
    stalled_after_rounds: float = Field(
        3.0,
        ge=1,
        description="/health/detailed degrades when the last evaluation round is older than this many "
        "rounds (plus a dead leader's lease)",
    )
    test_block_file: Path | None = Field(
        None, description="Tests only: the first evaluation that finds this file deletes it and blocks"
    )


class Settings(BaseSettings):
    """RTPM settings. With none set, RTPM runs embedded: SQLite under `./rtpm-data/`."""

    model_config = SettingsConfigDict(env_prefix="RTPM_", env_nested_delimiter="__", env_file=".env", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    data_dir: Path = Path("rtpm-data")
    database_url: str | None = Field(
        None, description="postgresql://user@host:port/db to use PostgreSQL; unset means SQLite in data_dir"
    )
    database_schema: str = Field("public", description="PostgreSQL schema for RTPM's tables")
    database_pool_size: int = Field(8, ge=1)
    database_read_url: str | None = Field(
        None,
        description="Streaming replicas for queries, comma-separated postgresql:// URLs; a replica that has not "
        "replayed the primary's latest commit is not used (see docs/read-replicas.md)",
    )
    database_application_name: str = Field(
        "rtpm", min_length=1, description="application_name of RTPM's PostgreSQL connections (pg_stat_activity)"
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="FULL survives power loss; NORMAL only process crashes"
    )
    partition_days_ahead: int = Field(2, ge=0, description="PostgreSQL daily partitions made in advance")
    storage_engine: Literal["rows", "head"] = Field(
        "rows",
        description="rows: a row per sample until compaction; head: a write-ahead log of one record per flush, "
        "recent samples in memory, closed windows written once as chunks",
    )
    storage_head_max_series: int = Field(
        1_000_000, ge=1, description="head engine: active series held in memory; new series past it are refused"
    )
    storage_wal_poll_seconds: float = Field(
        0.25, ge=0, description="head engine: how often each process applies WAL records of the others"
    )
    default_tenant: str = "default"
    keep_alive_seconds: int = Field(
        120,
        ge=1,
        description="Idle HTTP connections are kept this long; above what senders keep theirs (Prometheus 90 s), "
        "so a sender never reuses a connection the server is closing",
    )
    current_metrics: list[str] = Field(
        default_factory=list,
        description="Metrics GET /api/v1/metrics/current answers (the original API's cpu_usage, memory_usage, "
        "response_time were fixed); empty: every metric of the tenant",
    )
    log_level: str = Field("info", description="debug, info, warning or error")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="json: one JSON object per line; console: for people; auto: console in a terminal"
    )
    jobs: Literal["embedded", "celery", "off"] = Field(
        "embedded", description="Who runs background jobs: asyncio tasks in `rtpm serve`, Celery, or nobody"
    )
    maintenance: MaintenanceSettings = MaintenanceSettings()
    limits: LimitsSettings = LimitsSettings()
    write_buffer: WriteBufferSettings = WriteBufferSettings()
    query: QuerySettings = QuerySettings()
    realtime: RealtimeSettings = RealtimeSettings()
    auth: AuthSettings = AuthSettings()
    alerting: AlertingSettings = AlertingSettings()
    admin_password: SecretStr | None = Field(
        None,
        description="Password of the admin created on first start; unset: a random one, printed once",
        json_schema_extra={"placeholder": "changeme-admin-password"},
    )
    redis_url: str | None = Field(None, description="redis://...; rate limits (and more) shared between processes")
    flower_basic_auth: SecretStr | None = Field(
        None,
        description="user:password for Flower (docker-compose.yml passes it to Flower's --basic-auth)",
        json_schema_extra={"placeholder": "admin:changeme-flower-password"},
    )

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("RTPM_DATABASE_URL must start with postgresql:// (unset it to use SQLite)")
        return v

    @field_validator("database_read_url")
    @classmethod
    def _check_read_url(cls, v: str | None) -> str | None:
        if not v:
            return None
        for url in v.split(","):
            if not url.strip().startswith(("postgresql://", "postgres://")):
                raise ValueError("RTPM_DATABASE_READ_URL: every replica URL must start with postgresql://")
        return v

    @property
    def database_read_urls(self) -> list[str]:
        return [u.strip() for u in (self.database_read_url or "").split(",") if u.strip()]

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        """In production, the placeholders of `.env.example` are refused: they are public. (The
        JWT secret's is refused with the other weak secrets, by security/tokens.py.)"""
        if self.environment != "production":
            return self
        for env, value in (
            ("RTPM_ADMIN_PASSWORD", self.admin_password),
            ("RTPM_FLOWER_BASIC_AUTH", self.flower_basic_auth),
        ):
            if value is not None and is_placeholder(value.get_secret_value()):
                raise ValueError(f"{env} is still the placeholder of .env.example; set a real value for production")
        return self

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "rtpm.db"
