"""The teacher store's field names, in one place.

A store written by ``cache-teachers`` holds per item ``frames``, ``views`` (per view), one
``teachers/<name>/<output>`` field per teacher and cached output (per view), and the item's
``video``, ``frame``, ``label`` and ``split``; its extras hold ``class_prototypes/<name>``.
Code that reads or writes a store builds and parses these names here only, so a new cached
output (another layer, say) is one entry in ``TEACHER_OUTPUTS``.
"""

from __future__ import annotations

from typing import Iterable

# What is cached per teacher: the conv4 map (K, C, h, w) and the logits (K, num_classes).
TEACHER_OUTPUTS = ("conv4", "logits")
# What the student's input is built from (the frame and its augmentation views) and its target.
STUDENT_FIELDS = ("frames", "views", "label")
# Item bookkeeping: which video and frame an item is, and its split (0 train, 1 test).
ITEM_FIELDS = ("video", "frame", "split")
_PREFIX = "teachers/"
_PROTOTYPES = "class_prototypes/"


def teacher_field(teacher: str, output: str) -> str:
    """The store field of one teacher's cached ``output`` ("conv4" or "logits")."""
    if output not in TEACHER_OUTPUTS:
        raise ValueError(f"unknown teacher output {output!r}; the store caches {', '.join(TEACHER_OUTPUTS)}")
    if not teacher or "/" in teacher:
        raise ValueError(f"teacher name {teacher!r}: must be non-empty and without '/'")
    return f"{_PREFIX}{teacher}/{output}"


def parse_teacher_field(name: str) -> tuple[str, str] | None:
    """``(teacher, output)`` for a teacher field name, else None."""
    if not name.startswith(_PREFIX):
        return None
    parts = name[len(_PREFIX):].split("/")
    if len(parts) != 2 or parts[1] not in TEACHER_OUTPUTS or not parts[0]:
        return None
    return parts[0], parts[1]


def teacher_names(field_names: Iterable[str]) -> list[str]:
    """The teachers a store holds, in field order (a teacher counts once it has logits)."""
    names = []
    for name in field_names:
        parsed = parse_teacher_field(name)
        if parsed and parsed[1] == "logits" and parsed[0] not in names:
            names.append(parsed[0])
    return names


def teacher_fields(teachers: Iterable[str], outputs: Iterable[str] = TEACHER_OUTPUTS) -> list[str]:
    """Every ``teacher_field`` of ``teachers`` x ``outputs``, teacher-major."""
    outputs = tuple(outputs)
    return [teacher_field(t, o) for t in teachers for o in outputs]


def teacher_store_fields(teachers: Iterable[str]) -> list[str]:
    """Every field a store of ``teachers`` written by ``cache-teachers`` holds."""
    return [*STUDENT_FIELDS, *ITEM_FIELDS, *teacher_fields(teachers)]


def prototypes_key(teacher: str) -> str:
    """The extra holding a teacher's class prototypes (mean training logit per class)."""
    return f"{_PROTOTYPES}{teacher}"
