"""The store's schema as a list of migrations, applied in order.

`PRAGMA user_version` holds the number of migrations applied. A migration is SQL,
or a Python step given the connection and the store's SecretBox. It is never edited
once committed: later issues append new ones (API keys gaining a
column, metering tables, ...). The tables for API keys, executions, the account
ledger and the outbox exist from the start so those issues only add code.

The store runs the migrations with foreign keys off (SQLite ignores that pragma
inside a transaction, and a table rebuild must not cascade deletes) and checks
`PRAGMA foreign_key_check` before it commits.
"""

from __future__ import annotations

from collections.abc import Callable

import apsw

from daemon.store.sealed_env import seal_clear_env
from daemon.store.secret_box import SecretBox

# SQL, or a data step in Python (for what SQL cannot do, such as sealing values).
Migration = str | Callable[[apsw.Connection, SecretBox], None]

MIGRATIONS: tuple[Migration, ...] = (
    # 1: the whole first schema.
    """
    CREATE TABLE scripts (
        id              INTEGER PRIMARY KEY,
        name            TEXT NOT NULL UNIQUE,
        description     TEXT NOT NULL DEFAULT '',
        language        TEXT NOT NULL CHECK (language IN ('python', 'javascript')),
        language_version TEXT NOT NULL,
        status          TEXT NOT NULL,
        added_by        TEXT NOT NULL,
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL,
        env_json        TEXT NOT NULL DEFAULT '[]',
        timeout_s       INTEGER NOT NULL,
        min_replicas    INTEGER NOT NULL,
        max_replicas    INTEGER NOT NULL,
        cpu_target      INTEGER NOT NULL,
        profile         TEXT NOT NULL,
        archive_json    TEXT NOT NULL,
        functions_json  TEXT NOT NULL DEFAULT '[]',
        current_version INTEGER
    );
    CREATE TABLE versions (
        id              INTEGER PRIMARY KEY,
        script_id       INTEGER NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
        number          INTEGER NOT NULL,
        display_name    TEXT NOT NULL,
        status          TEXT NOT NULL,
        phase           TEXT NOT NULL,
        deployed_by     TEXT NOT NULL,
        started_at      TEXT NOT NULL,
        ended_at        TEXT,
        failure_reason  TEXT,
        config_json     TEXT NOT NULL,
        env_key         TEXT,
        undeployed_by   TEXT,
        undeployed_at   TEXT,
        UNIQUE (script_id, number),
        UNIQUE (script_id, display_name)
    );
    CREATE INDEX versions_status ON versions(status);
    CREATE TABLE events (
        id              INTEGER PRIMARY KEY,
        script_id       INTEGER NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
        at              TEXT NOT NULL,
        kind            TEXT NOT NULL,
        actor           TEXT NOT NULL,
        detail_json     TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_script ON events(script_id, id);
    CREATE TABLE api_keys (
        id              TEXT PRIMARY KEY,   -- the public key id of sk_<id>_<secret>
        script_id       INTEGER NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
        name            TEXT NOT NULL,
        hash            TEXT NOT NULL,
        created_by      TEXT NOT NULL,
        created_at      TEXT NOT NULL,
        last_used_at    TEXT,
        UNIQUE (script_id, name)
    );
    CREATE TABLE executions (
        id              TEXT PRIMARY KEY,
        script_id       INTEGER NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
        version         INTEGER NOT NULL,
        function        TEXT NOT NULL,
        key_name        TEXT,
        status          TEXT NOT NULL,
        received_at     TEXT NOT NULL,
        started_at      TEXT,
        ended_at        TEXT,
        queue_ms        REAL,
        wall_ms         REAL,
        cpu_ms          REAL,
        peak_memory_bytes INTEGER,
        input_bytes     INTEGER,
        result_json     TEXT,
        error_json      TEXT,
        logs            TEXT
    );
    CREATE INDEX executions_script ON executions(script_id, received_at);
    CREATE TABLE account (
        id              INTEGER PRIMARY KEY CHECK (id = 1),
        balance_credits REAL NOT NULL DEFAULT 0,
        total_allocated REAL NOT NULL DEFAULT 0,
        updated_at      TEXT NOT NULL
    );
    CREATE TABLE ledger (
        id              INTEGER PRIMARY KEY,
        at              TEXT NOT NULL,
        script_id       INTEGER REFERENCES scripts(id) ON DELETE SET NULL,
        script_name     TEXT,
        kind            TEXT NOT NULL,
        credits         REAL NOT NULL,
        detail_json     TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY,
        created_at      TEXT NOT NULL,
        kind            TEXT NOT NULL,
        recipient       TEXT NOT NULL,
        subject         TEXT NOT NULL,
        body            TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        sent_at         TEXT,
        last_error      TEXT
    );
        """,
    # 2: credits in exact micro-credits and the usage ledger (one row per replica per
    # wall-clock hour, see daemon/account/credit_rules.py); the outbox remembers which script a
    # message is about, for `scriptctl notifications`.
    """
    ALTER TABLE account ADD COLUMN allocation_micro INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE account ADD COLUMN balance_micro INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE credit_usage (
        replica_id      TEXT NOT NULL,
        hour_start_ms   INTEGER NOT NULL,
        script_id       INTEGER REFERENCES scripts(id) ON DELETE SET NULL,
        script_name     TEXT NOT NULL,
        version         INTEGER NOT NULL,
        profile         TEXT NOT NULL,
        period_start_ms INTEGER NOT NULL,
        period_end_ms   INTEGER NOT NULL,
        replica_ms      INTEGER NOT NULL,
        amount_micro    INTEGER NOT NULL,
        PRIMARY KEY (replica_id, hour_start_ms)
    );
    CREATE INDEX credit_usage_hour ON credit_usage (hour_start_ms, script_name);
    ALTER TABLE outbox ADD COLUMN script TEXT;
    ALTER TABLE outbox ADD COLUMN version INTEGER;
    CREATE INDEX outbox_due ON outbox (sent_at, next_attempt_at);
    CREATE INDEX events_kind ON events (script_id, kind, id);
    """,
    # 3: script ids are never reused (AUTOINCREMENT): a script's uid (replicas.uid_base
    # + id) and its folder scripts/<id>/ must not pass to a later script. SQLite adds
    # AUTOINCREMENT only by rebuilding the table; rows keep their ids, so the tables
    # that refer to scripts(id) need no change. sqlite_sequence starts at the highest
    # id present (ids freed before this migration cannot be known any more).
    """
    CREATE TABLE scripts_v3 (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        name            TEXT NOT NULL UNIQUE,
        description     TEXT NOT NULL DEFAULT '',
        language        TEXT NOT NULL CHECK (language IN ('python', 'javascript')),
        language_version TEXT NOT NULL,
        status          TEXT NOT NULL,
        added_by        TEXT NOT NULL,
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL,
        env_json        TEXT NOT NULL DEFAULT '[]',
        timeout_s       INTEGER NOT NULL,
        min_replicas    INTEGER NOT NULL,
        max_replicas    INTEGER NOT NULL,
        cpu_target      INTEGER NOT NULL,
        profile         TEXT NOT NULL,
        archive_json    TEXT NOT NULL,
        functions_json  TEXT NOT NULL DEFAULT '[]',
        current_version INTEGER
    );
    INSERT INTO scripts_v3 SELECT
        id, name, description, language, language_version, status, added_by, created_at,
        updated_at, env_json, timeout_s, min_replicas, max_replicas, cpu_target, profile,
        archive_json, functions_json, current_version
    FROM scripts;
    DROP TABLE scripts;
    ALTER TABLE scripts_v3 RENAME TO scripts;
    """,
    # 4: the HTTP request log of a call (daemon/egress), as JSON.
    """
    ALTER TABLE executions ADD COLUMN http_log_json TEXT;
    """,
    # 5: the execution details of code steps (inputs, outputs, logs), and the payload of
    # function calls, as one JSON object per record.
    """
    ALTER TABLE executions ADD COLUMN details_json TEXT;
    """,
    # 6: a script's egress settings (policy, allowlist, inspection), as JSON.
    """
    ALTER TABLE scripts ADD COLUMN egress_json TEXT NOT NULL DEFAULT '{}';
    """,
    # 7: integration secrets of the account, their values sealed with AES-GCM
    # (daemon/store/secret_box.py), and the names of the secrets granted to a script.
    """
    CREATE TABLE secrets (
        name            TEXT PRIMARY KEY,
        sealed          BLOB NOT NULL,
        created_by      TEXT NOT NULL,
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    );
    ALTER TABLE scripts ADD COLUMN secrets_json TEXT NOT NULL DEFAULT '[]';
    """,
    # 8: secret environment variables sealed at rest like integration secrets: the
    # values stored in clear until now, in scripts and in versions' snapshots.
    seal_clear_env,
    # 9: a code step's declared inputs and outputs (a runtime setting, JSON; NULL for
    # functions) and a memory limit below the profile's (a step's default limit).
    """
    ALTER TABLE scripts ADD COLUMN step_json TEXT;
    ALTER TABLE scripts ADD COLUMN memory_bytes INTEGER;
    """,
    # 10: asynchronous calls (Prefer: respond-async). The queue itself, so an accepted
    # call survives a restart; the callback deliveries of each; the per-script callback
    # secret, sealed like integration secrets; and a script's async settings.
    """
    CREATE TABLE async_calls (
        id              TEXT PRIMARY KEY,
        script_id       INTEGER NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
        function        TEXT NOT NULL,          -- '(step)' for a code step's run
        key_name        TEXT,
        body            BLOB NOT NULL,          -- the request body, as received
        details         INTEGER NOT NULL DEFAULT 0,
        status          TEXT NOT NULL,          -- queued running succeeded failed ...
        dead            INTEGER NOT NULL DEFAULT 0,
        idempotency_key TEXT,
        callback_url    TEXT,
        max_retries     INTEGER NOT NULL,
        max_age_ms      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        received_ms     INTEGER NOT NULL,
        next_ms         INTEGER NOT NULL,       -- when the next attempt is due
        started_ms      INTEGER,
        ended_ms        INTEGER,
        result_json     TEXT,
        error_json      TEXT,
        attempts_json   TEXT NOT NULL DEFAULT '[]',
        callback_state  TEXT,                   -- pending, delivered, failed (NULL: none)
        callback_next_ms INTEGER,
        callback_tries  INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX async_calls_due ON async_calls (status, next_ms);
    CREATE INDEX async_calls_callbacks ON async_calls (callback_state, callback_next_ms);
    CREATE INDEX async_calls_script ON async_calls (script_id, received_ms);
    CREATE UNIQUE INDEX async_calls_idempotency ON async_calls (script_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE TABLE callback_deliveries (
        id              INTEGER PRIMARY KEY,
        call_id         TEXT NOT NULL REFERENCES async_calls(id) ON DELETE CASCADE,
        at              TEXT NOT NULL,
        attempt         INTEGER NOT NULL,
        status_code     INTEGER,
        error           TEXT,
        duration_ms     REAL NOT NULL
    );
    CREATE INDEX callback_deliveries_call ON callback_deliveries (call_id, id);
    CREATE TABLE callback_secrets (
        script_id       INTEGER PRIMARY KEY REFERENCES scripts(id) ON DELETE CASCADE,
        sealed          BLOB NOT NULL,
        created_at      TEXT NOT NULL
    );
    ALTER TABLE scripts ADD COLUMN async_json TEXT NOT NULL DEFAULT '{}';
    """,
    # per-script concurrency: calls in flight per worker, workers per replica (NULL: the
    # profile's whole vCPUs)
    """
    ALTER TABLE scripts ADD COLUMN concurrency INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE scripts ADD COLUMN workers_per_replica INTEGER;
    """,
    # samples of a serving script's replicas and CPU utilization over time, for
    # the web console's chart (daemon/account/usage_loop.py writes them).
    """
    CREATE TABLE usage_samples (
        script_id       INTEGER NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
        at_ms           INTEGER NOT NULL,       -- unix milliseconds
        version         INTEGER NOT NULL,
        replicas        INTEGER NOT NULL,       -- the pool's replicas, starting ones too
        ready           INTEGER NOT NULL,
        cpu_pct         REAL,                   -- average over the ready replicas, % of quota
        PRIMARY KEY (script_id, at_ms)
    );
    CREATE INDEX usage_samples_at ON usage_samples (at_ms);
    """,
)
