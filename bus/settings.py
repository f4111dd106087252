"""One settings object per process, read from ``PRAXIS_*`` environment variables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from platformdirs import user_config_dir, user_data_dir
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(user_data_dir("praxis", appauthor=False))


def _default_agents_dir() -> Path:
    return Path(user_config_dir("praxis", appauthor=False)) / "agents"


class Settings(BaseSettings):
    """Built once in each entry point and passed down; nothing reads the environment at import."""

    model_config = SettingsConfigDict(env_prefix="PRAXIS_", extra="ignore")

    nats_url: str | None = Field(
        default=None,
        description="NATS server URL(s), comma separated. Unset: an embedded server is used.",
    )
    nats_nkey_seed: Path | None = Field(
        default=None,
        description="A file holding this process's NATS nkey seed (SU...). Unset with the "
        "embedded server: the seed of the process's role, made under the data directory.",
    )
    nats_creds: Path | None = Field(
        default=None,
        description="A NATS credentials file (JWT and seed), for servers in operator mode.",
    )
    nats_user: str | None = Field(default=None, description="A NATS user name (with a password).")
    nats_password: SecretStr | None = Field(default=None, description="The NATS user's password.")
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        json_schema_extra={
            "shown_default": "the user data directory (~/.local/share/praxis on Linux)"
        },
        description="Where the embedded server keeps JetStream data.",
    )
    stream: str = Field(
        default="PRAXIS",
        description="Name of the JetStream stream holding every session's commands, events "
        "and snapshots.",
    )
    sessions_bucket: str = Field(
        default="praxis_sessions",
        description="Key-value bucket of session records (what listings read).",
    )
    leases_bucket: str = Field(
        default="praxis_leases", description="Key-value bucket of the workers' leases on sessions."
    )
    workers_bucket: str = Field(
        default="praxis_workers", description="Key-value bucket of worker heartbeats."
    )
    dead_letters_bucket: str = Field(
        default="praxis_dead_letters",
        description="Key-value bucket of parked commands (dead letters).",
    )
    janitor_bucket: str = Field(
        default="praxis_janitor",
        description="Key-value bucket of the retention sweep's lock and progress.",
    )
    keys_bucket: str = Field(
        default="praxis_keys", description="Key-value bucket of the edge's API keys (hashed)."
    )
    consumer: str = Field(
        default="praxis-workers",
        description="Name of the durable consumer the workers share (the work queue).",
    )
    partitions: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Partition streams of the bus, each with its own leader (see the "
        "deployment guide). A bus provisioned by a process with this set is made with this "
        "many, or grown to it; unset: what the bus has (1 for a new one). Never shrinks.",
    )
    worker_partitions: Annotated[list[int] | None, NoDecode] = Field(
        default=None,
        description="The partitions this worker takes work from (comma separated, e.g. "
        "'0,2'); unset: all of them.",
    )
    replicas: int = Field(
        default=1, ge=1, le=5, description="Replicas of the stream and buckets (3 in a cluster)."
    )
    duplicate_window: float = Field(
        default=600.0, gt=0, description="Seconds the stream deduplicates command ids."
    )
    max_message_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest command or event (bytes)."
    )
    lease_ttl: float = Field(
        default=10.0,
        ge=1.0,
        description="Seconds a worker's lease on a session lives without renewal.",
    )
    ack_wait: float = Field(
        default=10.0,
        ge=1.0,
        description="Seconds before a work message a worker holds without renewing comes back. "
        "Live workers renew it with their lease, so equal to lease_ttl: a crashed worker's "
        "sessions are taken over one lease time after it died.",
    )
    heartbeat_interval: float = Field(
        default=2.0,
        gt=0,
        description="Seconds between worker heartbeats (a worker is live for 3 of them).",
    )
    worker_concurrency: int = Field(
        default=256,
        ge=1,
        description="Sessions one worker works on at once (one waiting for its next input "
        "takes no slot); past that, commands wait their turn in order.",
    )
    turn_timeout: float = Field(
        default=300.0, gt=0, description="Seconds a turn may take before it fails."
    )
    session_idle_timeout: float = Field(
        default=30 * 86400,
        ge=0,
        description="Seconds without activity after which a session expires (0: never); "
        "a session may set its own at creation.",
    )
    session_max_lifetime: float = Field(
        default=0,
        ge=0,
        description="Seconds after creation at which a session expires, active or not "
        "(0: never); a session may set its own at creation.",
    )
    session_retention: float = Field(
        default=30 * 86400,
        ge=0,
        description="Seconds an ended (completed, failed or expired) session is kept before "
        "the workers purge it (0: keep ended sessions forever).",
    )
    retention_interval: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds between the workers' sweeps for sessions past their retention "
        "(one worker sweeps at a time).",
    )
    export_dir: Path | None = Field(
        default=None,
        description="Where the workers write each session they purge (ID.jsonl, the import "
        "format) first; unset: no export.",
    )
    command_attempts: int = Field(
        default=3,
        ge=1,
        description="Times a command whose handling raises is tried before it is parked "
        "as a dead letter (the bus being unavailable does not count).",
    )
    turn_attempts: int = Field(
        default=5,
        ge=1,
        description="Times a turn is started before it is given up and parked as a dead "
        "letter (its workers kept dying during it).",
    )
    nats_sync: Literal["periodic", "always"] = Field(
        default="periodic",
        description="The embedded NATS server's JetStream disk sync: 'periodic' (the "
        "server's default, every 2 minutes: a power loss can lose what was stored since) "
        "or 'always' (every message is on disk before it is acknowledged; slower).",
    )
    group_commit: float = Field(
        default=0.02,
        ge=0,
        description="Seconds a turn's start waits to be stored with its end: a turn that "
        "ends sooner is stored as one record (message, start, reply, end); a longer one "
        "stores its start when this passes (0: at once, its token deltas streamed from "
        "the first).",
    )
    request_timeout: float = Field(
        default=5.0, gt=0, description="Seconds for one request to NATS."
    )
    retry_window: float = Field(
        default=20.0,
        gt=0,
        description="Seconds a write keeps being tried while JetStream cannot answer it: "
        "after a server is lost, a replicated stream's followers wait 4-9 s before electing "
        "a new leader (sometimes two rounds), and writes go unanswered meanwhile.",
    )
    command_timeout: float = Field(
        default=15.0,
        gt=0,
        description="Seconds of quiet after which a client waiting for a stored command's "
        "outcome gives up, when no worker is live.",
    )
    queue_timeout: float = Field(
        default=300.0,
        gt=0,
        description="Seconds in all a client waits for a stored command's outcome while "
        "live workers can answer it (a turn that has started may take turn_timeout more).",
    )
    context_messages: int = Field(
        default=200,
        ge=2,
        description="Messages an agent sees at most (older ones are compacted into a summary); "
        "an agent may ask for fewer.",
    )
    context_chars: int = Field(
        default=100_000,
        ge=100,
        description="Characters an agent sees at most in its recent messages (the rest is "
        "compacted into a summary); an agent may ask for fewer.",
    )

    @property
    def context_cap(self) -> int:
        """Messages the session's state keeps whatever happens (compaction keeps fewer)."""
        return 2 * self.context_messages

    linger: float = Field(
        default=0.5,
        ge=0,
        description="Seconds a worker keeps a session after its last input, for the next one.",
    )
    state_cache: int = Field(
        default=1000, ge=0, description="Sessions whose state a worker keeps between runs."
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="A worker serves Prometheus metrics at http://METRICS_HOST:PORT/metrics "
        "(0: any free port, shown in its heartbeat); unset: none (the edge has /metrics).",
    )
    metrics_host: str = Field(default="127.0.0.1", description="Where workers serve metrics.")
    tracing: Literal["off", "console", "otlp"] = Field(
        default="off",
        description="OpenTelemetry spans: off, printed to stderr (console), or sent to "
        "OTEL_EXPORTER_OTLP_ENDPOINT (otlp, with opentelemetry-exporter-otlp installed).",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log lines as text, or one JSON object per line; both carry the session "
        "and task ids (read from PRAXIS_LOG_FORMAT when logging starts).",
    )
    checkpoint_every: int = Field(
        default=16,
        ge=1,
        description="Records at least between a session's snapshots, and they must hold "
        "twice the last snapshot's bytes (one is also taken when the session goes idle): "
        "a reader folds about this many, or twice the snapshot's size.",
    )
    record_format: Literal[1, 2] = Field(
        default=2,
        description="How workers store a decision's events: 2, what the events share "
        "stored once (half the bytes or less); 1, each event whole, as versions of Praxis "
        "before records of format 2 wrote (and only read) them. Both are read. Set 1 on "
        "the new workers while a rolling upgrade from such a version runs, then 2.",
    )
    record_interval: float = Field(
        default=5.0,
        ge=0,
        description="Seconds between writes of a session's record (what listings read) "
        "while the session is in use, when only its counters and times changed; a change "
        "of state is written at once, and the newest record when the session goes idle.",
    )
    agents: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra agents besides the installed entry points: 'module:attribute' "
        "names, comma separated or as a JSON list (a module not installed is looked for in "
        "the current directory).",
    )
    agents_dir: Path = Field(
        default_factory=_default_agents_dir,
        json_schema_extra={"shown_default": "~/.config/praxis/agents on Linux"},
        description="Agent definitions, one *.toml file per agent.",
    )
    inprocess_worker: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="Whether the CLI and the edge run a worker of their own: 'auto' (with the "
        "embedded server, when no dedicated worker is live), 'always' or 'never'.",
    )
    auth: Literal["on", "off"] = Field(
        default="off",
        description="'on': every edge request needs an API key or a JWT, and sees only its "
        "owner's sessions. 'off' is refused on a non-loopback address.",
    )
    jwt_secret: SecretStr | None = Field(
        default=None, description="HS256: the shared secret JWTs are signed with."
    )
    jwt_jwks_file: Path | None = Field(
        default=None, description="RS256/ES256: a JWKS file with the keys JWTs are signed with."
    )
    jwt_issuer: str | None = Field(default=None, description="The JWTs' required 'iss'.")
    jwt_audience: str | None = Field(default=None, description="The JWTs' required 'aud'.")
    jwt_tenant_claim: str = Field(default="tenant", description="The claim naming the tenant.")
    jwt_admin_scope: str = Field(
        default="praxis:admin", description="A scope (in 'scope' or 'scp') that makes an admin."
    )
    rate_limit: int = Field(
        default=100,
        ge=0,
        description="Requests per second the edge takes from one caller (one credential, or "
        "one address without); over it: 429 with Retry-After. 0: no limit.",
    )
    max_streams: int = Field(
        default=100,
        ge=0,
        description="Event streams (SSE, GraphQL subscriptions) one caller may hold open at "
        "once; over it: 429. 0: no limit.",
    )
    max_sessions_per_owner: int = Field(
        default=10_000,
        ge=0,
        description="Sessions one owner may have that have not ended; creating one more: "
        "429. 0: no limit. (Admins and callers without an owner are not counted.)",
    )
    edge_url: str | None = Field(
        default=None,
        description="A remote edge (http://host:port) the CLI's session commands go through, "
        "with PRAXIS_API_KEY, instead of the bus.",
    )
    api_key: SecretStr | None = Field(
        default=None, description="The API key (or a JWT) the CLI gives a remote edge."
    )
    edge_host: str = Field(default="127.0.0.1", description="Address the edge listens on.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Web origins (scheme://host[:port], comma separated) whose pages may use "
        "the edge from a browser, besides the edge's own chat page; any other page's "
        "requests are refused (403).",
    )
    edge_port: int = Field(default=8000, ge=0, le=65535, description="Port of the edge (0: any).")
    edge_max_body: int = Field(
        default=64 * 1024, ge=1024, description="Largest HTTP request body the edge takes (bytes)."
    )
    sse_keepalive: float = Field(
        default=15.0, gt=0, description="Seconds of quiet after which an SSE stream gets a comment."
    )
    openai_agent: str | None = Field(
        default=None,
        description="The agent of an OpenAI-API conversation created without metadata.model "
        "(the edge's /v1 routes); unset: such a conversation is refused (400).",
    )
    log_level: str | None = Field(
        default=None,
        description="Log level (DEBUG, INFO, WARNING, ERROR). Unset: WARNING for the CLI and "
        "the edge, INFO for workers and 'praxis up'.",
        json_schema_extra={"shown_default": "WARNING or INFO"},
    )
    drain_grace: float = Field(
        default=10.0,
        ge=0,
        description="Seconds a stopping worker lets running turns finish before handing them back.",
    )

    @field_validator("cors_origins", "agents", "worker_partitions", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        """A comma-separated list (or a JSON one) from the environment."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except ValueError as e:
                    raise ValueError(
                        f"not a JSON list ({e}): give names separated by commas, or a JSON "
                        'list such as ["my_agents:Shout"]'
                    ) from None
            return [o.strip() for o in text.split(",") if o.strip()]
        return value
