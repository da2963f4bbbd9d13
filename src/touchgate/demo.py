"""The demo project that ``touchgate serve --demo`` loads (idempotent)."""

from __future__ import annotations

from sqlalchemy import select

from .models import Attribute, Project, Space, User
from .runtime import Runtime

DEMO_PROJECT = "Demo"
DEMO_ATTRIBUTES = [
    ("memberId", "Member id", "string", "identity", False),
    ("phone", "Phone", "string", "attribute", False),
    ("name", "Name", "string", "attribute", False),
    ("city", "City", "string", "attribute", False),
    ("level", "Member level", "number", "attribute", False),
    ("birthday", "Birthday", "date", "attribute", False),
    ("idCard", "ID card number", "string", "attribute", True),
]
CITIES = ["Shanghai", "Beijing", "Shenzhen", "Hangzhou"]


def load_demo(runtime: Runtime, base_url: str) -> str:
    with runtime.tx() as session:
        project = session.scalars(select(Project).where(Project.name == DEMO_PROJECT)).first()
        if project is None:
            project = Project(name=DEMO_PROJECT, timezone="Asia/Shanghai")
            session.add(project)
            session.flush()
            for space_name in ("Growth", "Membership"):
                session.add(Space(project_id=project.id, name=space_name))
            for key, name, type_, kind, sensitive in DEMO_ATTRIBUTES:
                session.add(
                    Attribute(
                        project_id=project.id,
                        key=key,
                        name=name,
                        type=type_,
                        kind=kind,
                        sensitive=sensitive,
                    )
                )
            session.add_all(
                User(
                    project_id=project.id,
                    gid=1000 + i,
                    attributes={
                        "memberId": f"M{i:04d}",
                        "phone": f"130{i:08d}",
                        "name": f"Member {i}",
                        "city": CITIES[i % len(CITIES)],
                        "level": i % 5,
                        "birthday": f"199{i % 10}-0{1 + i % 9}-1{i % 10}",
                        "idCard": "310***********1234",
                    },
                )
                for i in range(1, 201)
            )
        project_id = project.id
    return f"Demo project {DEMO_PROJECT!r} is project {project_id} (200 users, 2 spaces)."
