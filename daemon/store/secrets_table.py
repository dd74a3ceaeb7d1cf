"""The store's SQL for integration secrets: named values of the account, sealed with
AES-GCM (daemon/store/secret_box.py) before they reach the database.

``SecretsStore`` is a mixin of ``daemon.store.database.Store`` like ``KeysStore``.
Values leave only through ``secret_values`` (and a script's secret environment
variables, sealed too, through ``env_values``), for the deployer that builds a
replica's environment; listings carry ``SecretInfo`` (never a value). A script grants secrets by
name in its settings (`scripts.secrets_json`); those are the secret's "used by".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from daemon.core.errors import BadRequest, Conflict, NotFound
from daemon.core.models import DEPLOYED, DEPLOYING, EnvVar
from daemon.store.parts import StoreParts
from daemon.store.sealed_env import open_env
from daemon.store.secret_box import SecretBox

__all__ = ["SecretInfo", "SecretsStore"]

_USERS_SQL = (
    "SELECT s.name, s.status FROM scripts s, json_each(s.secrets_json) g "
    "WHERE g.value = ? ORDER BY s.name"
)


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A secret as people see it: its name, when it was set, and the scripts granted it."""

    name: str
    created_by: str
    created_at: str
    updated_at: str
    used_by: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "used_by": list(self.used_by),
        }


class SecretsStore(StoreParts):
    """Integration secrets; mixed into ``daemon.store.database.Store``."""

    secret_box: SecretBox

    def put_secret(self, name: str, value: str, actor: str, now: str) -> SecretInfo:
        """Set `name` to `value` (a new secret, or a new value for an existing one)."""
        sealed = self.secret_box.seal(name, value)
        with self._tx():
            self._db.execute(
                "INSERT INTO secrets (name, sealed, created_by, created_at, updated_at) "
                "VALUES (?1, ?2, ?3, ?4, ?4) "
                "ON CONFLICT (name) DO UPDATE SET sealed = ?2, updated_at = ?4",
                (name, sealed, actor, now),
            )
            return self._secret_info(self._one("SELECT * FROM secrets WHERE name=?", (name,)))

    def list_secrets(self) -> list[SecretInfo]:
        with self._lock:
            rows = self._rows("SELECT * FROM secrets ORDER BY name")
            return [self._secret_info(r) for r in rows]

    def _secret_info(self, row: dict[str, Any]) -> SecretInfo:
        users = tuple(r["name"] for r in self._rows(_USERS_SQL, (row["name"],)))
        return SecretInfo(
            row["name"], row["created_by"], row["created_at"], row["updated_at"], users
        )

    def missing_secrets(self, names: Iterable[str]) -> list[str]:
        """Those of `names` that are no secret of the account, in the order given."""
        with self._lock:
            known = {r["name"] for r in self._rows("SELECT name FROM secrets")}
        return [n for n in names if n not in known]

    def secret_values(self, names: Iterable[str]) -> dict[str, str]:
        """name -> value in clear, for a replica's environment. BadRequest if one is gone."""
        wanted = list(names)
        with self._lock:
            rows = {
                r["name"]: r["sealed"]
                for r in self._rows("SELECT name, sealed FROM secrets")
                if r["name"] in wanted
            }
        gone = [n for n in wanted if n not in rows]
        if gone:
            raise BadRequest(f"unknown secret {gone[0]!r}: set it with `scriptctl secrets set`")
        return {n: self.secret_box.open(n, bytes(rows[n])) for n in wanted}

    def env_values(self, env: Iterable[EnvVar]) -> dict[str, str]:
        """key -> value in clear of environment variables, their sealed values opened:
        for a replica's environment only."""
        return open_env(self.secret_box, env)

    def delete_secret(self, name: str) -> None:
        """Remove `name`; refused (Conflict) while a Deployed script is granted it."""
        with self._tx():
            if not self._one("SELECT name FROM secrets WHERE name=?", (name,)):
                raise NotFound(f"no secret named {name!r}")
            users = [
                r["name"]
                for r in self._rows(_USERS_SQL, (name,))
                if r["status"] in (DEPLOYED, DEPLOYING)
            ]
            if users:
                raise Conflict(
                    f"secret {name!r} is used by deployed scripts: {', '.join(users)}; "
                    "undeploy them or redeploy them without it first"
                )
            self._db.execute("DELETE FROM secrets WHERE name=?", (name,))
