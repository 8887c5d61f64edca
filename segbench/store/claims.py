"""Claims on training groups: how two drivers sharing one database never train one group twice.

A claim is a row under a unique (code_id, train_key) constraint, so taking one
is an ordinary INSERT that the second of two drivers loses — on SQLite and on
any server alike, with no advisory locks. Each claim has a lease that its
driver's heartbeat extends (:meth:`segbench.store.recorder.Recorder.beat`); a
claim whose lease ran out, or whose driver is known to be gone
(:func:`segbench.store.liveness.gone_reason`), may be taken over. The driver
that loses a claim waits for the group's results and adopts them
(:meth:`segbench.store.recorder.Recorder.adopt_results`).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from segbench.store import liveness
from segbench.store.db import Database
from segbench.store.liveness import now
from segbench.store.schema import Claim, Run


def take(db: Database, code_id: str, train_key: str, run_id: int) -> bool:
    """Take run ``run_id``'s claim on group ``train_key`` at ``code_id``, or say another live driver holds it.

    A stale claim is deleted only if it is still that same claim (its id and
    run), so two drivers taking over one stale claim cannot both win.
    """
    for _ in range(2):
        try:
            with db.session() as s:
                s.add(
                    Claim(
                        code_id=code_id,
                        train_key=train_key,
                        run_id=run_id,
                        lease_until=now() + timedelta(seconds=liveness.lease_seconds()),
                    )
                )
            return True
        except IntegrityError:
            pass
        with db.session() as s:
            held = s.scalar(select(Claim).where(Claim.code_id == code_id, Claim.train_key == train_key))
            if held is None:
                continue  # released meanwhile: try again
            if held.run_id == run_id:
                return True
            owner = s.get(Run, held.run_id)
            stale = held.lease_until < now() or owner is None or owner.status != "running"
            if not stale and liveness.gone_reason(owner) is None:  # type: ignore[arg-type]
                return False
            s.execute(delete(Claim).where(Claim.id == held.id, Claim.run_id == held.run_id))
    return False


def release(db: Database, code_id: str, train_key: str, run_id: int) -> None:
    """Give up run ``run_id``'s claim on ``train_key`` (nothing if it holds none): a waiting driver may take it."""
    with db.session() as s:
        s.execute(
            delete(Claim).where(
                Claim.code_id == code_id, Claim.train_key == train_key, Claim.run_id == run_id
            )
        )
