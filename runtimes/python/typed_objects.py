"""What a code step sees for values of custom objects' types (typed.py's e<obj> and
o<obj,field> codes): a record, and an option of a field. Standard library only;
loaded by typed.py as a sibling file, like typed_text.py.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import uuid


class EntityRecord:
    """A record of a custom object (type e<object uuid>)."""

    __slots__ = ("object_id", "record_id")

    def __init__(self, object_id: uuid.UUID, record_id: uuid.UUID) -> None:
        self.object_id, self.record_id = object_id, record_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EntityRecord) and (self.object_id, self.record_id) == (
            other.object_id,
            other.record_id,
        )

    def __hash__(self) -> int:
        return hash((self.object_id, self.record_id))

    def __repr__(self) -> str:
        return f"EntityRecord(object_id={self.object_id!s}, record_id={self.record_id!s})"


class FieldOption:
    """An option of a custom object's field (type o<object uuid,field uuid>)."""

    __slots__ = ("field_id", "object_id", "option")

    def __init__(self, object_id: uuid.UUID, field_id: uuid.UUID, option: str) -> None:
        self.object_id, self.field_id, self.option = object_id, field_id, option

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldOption) and self._key() == other._key()

    def _key(self) -> tuple[uuid.UUID, uuid.UUID, str]:
        return (self.object_id, self.field_id, self.option)

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"FieldOption(object_id={self.object_id!s}, field_id={self.field_id!s}, "
            f"option={self.option!r})"
        )
