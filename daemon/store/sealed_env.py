"""Secret environment variables at rest: their values are sealed with the store's
SecretBox (AES-GCM, daemon/store/secret_box.py) wherever they are stored, in a
script's settings (`scripts.env_json`) and in every version's snapshot
(`versions.config_json`).

A stored secret value is `{"sealed": "<base64 of nonce || ciphertext+tag>"}`, bound
to `env:<KEY>` as associated data (a colon never occurs in a secret's name, so a
sealed env value cannot pass for an integration secret, nor one variable's for
another's). Values leave the store sealed (`Sealed`); `open_env` is for the deployer,
which hands them to a replica. `seal_clear_env` is the migration that seals the
values an older daemon stored in clear.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import apsw
import orjson

from daemon.core.models import EnvVar, Sealed
from daemon.store.secret_box import SecretBox

__all__ = ["env_rows", "env_vars", "open_env", "seal_clear_env", "stored_value"]


def _aad(key: str) -> str:
    return f"env:{key}"


def stored_value(box: SecretBox, var: EnvVar) -> str | dict[str, str]:
    """`var`'s value as the store writes it: sealed when secret (sealing it now if a
    request brought it in clear), as it is otherwise."""
    value = var.value
    if not var.secret:
        if isinstance(value, Sealed):  # a request never unmasks a value (env_vars checks)
            raise ValueError(f"env {var.key}: a sealed value cannot be stored as public")
        return value
    blob = value.blob if isinstance(value, Sealed) else box.seal(_aad(var.key), value)
    return {"sealed": base64.b64encode(blob).decode()}


def loaded_value(stored: Any) -> str | Sealed:
    if isinstance(stored, dict):
        return Sealed(base64.b64decode(stored["sealed"]))
    return str(stored)


def env_rows(box: SecretBox, env: Iterable[EnvVar]) -> list[list[Any]]:
    """`scripts.env_json`'s rows: [key, value, secret]."""
    return [[e.key, stored_value(box, e), e.secret] for e in env]


def env_vars(rows: Iterable[list[Any]]) -> tuple[EnvVar, ...]:
    return tuple(EnvVar(k, loaded_value(v), bool(s)) for k, v, s in rows)


def open_env(box: SecretBox, env: Iterable[EnvVar]) -> dict[str, str]:
    """key -> value in clear, sealed values opened: only for a replica's environment."""
    return {
        e.key: box.open(_aad(e.key), e.value.blob) if isinstance(e.value, Sealed) else e.value
        for e in env
    }


# --- the migration -------------------------------------------------------------------


def seal_clear_env(db: apsw.Connection, box: SecretBox) -> None:
    """Seal every secret value still stored in clear, in scripts and in versions'
    snapshots. Works on the raw JSON (the models may have moved on since)."""
    for script_id, env_json in list(db.execute("SELECT id, env_json FROM scripts")):
        rows = orjson.loads(env_json)
        if _seal_rows(box, rows):
            db.execute("UPDATE scripts SET env_json=? WHERE id=?", (_dumps(rows), script_id))
    for version_id, config_json in list(db.execute("SELECT id, config_json FROM versions")):
        doc = orjson.loads(config_json)
        items = (doc.get("settings") or {}).get("env") or []
        rows = [[i["key"], i["value"], i["secret"]] for i in items]
        if _seal_rows(box, rows):
            for item, row in zip(items, rows, strict=True):
                item["value"] = row[1]
            db.execute("UPDATE versions SET config_json=? WHERE id=?", (_dumps(doc), version_id))


def _seal_rows(box: SecretBox, rows: list[list[Any]]) -> bool:
    """Seal the clear secret values of `rows` in place; whether any was."""
    changed = False
    for row in rows:
        key, value, secret = row
        if secret and isinstance(value, str):
            row[1] = stored_value(box, EnvVar(key, value, True))
            changed = True
    return changed


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
