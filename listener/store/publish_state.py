"""What the worker tells the other processes about its publishing: own approvals and publish progress.

- **Own approvals.** Approving a Databricks transition request makes the workspace fire
  ``MODEL_VERSION_TRANSITIONED_STAGE`` for the same version and stage. That version was validated a
  moment ago: validating it again would post a second comment. The worker records the approval just
  before approving; the web process that receives the echo (on any host) claims it, once, and answers
  it as ignored. A record nobody claims (the approval failed, the webhook does not send transitions)
  expires after :data:`OWN_APPROVAL_MAX_AGE_S`.
- **Publish progress.** A publish may be retried after a transient failure, on another host. Tags are
  idempotent; a comment and an approval are not, so each finished step of one validation's publish is
  recorded and skipped by the retry.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, select

from core.registry.stages import canonical_stage
from listener.store.database import Database
from listener.store.engine import dialect_insert
from listener.store.schema import own_approvals as approvals
from listener.store.schema import publish_steps as steps

#: how long an approval waits for its event; workspaces deliver within seconds
OWN_APPROVAL_MAX_AGE_S = 3600.0


def _stage(stage: str | None) -> str:
    return canonical_stage(stage) or str(stage)


class PublishState(Database):
    """Own approvals and publish progress, shared by every process and host using the store."""

    def record_own_approval(self, registry: str, model: str, version: str, stage: str | None) -> None:
        """Note that the guard is about to approve ``model`` ``version``'s move to ``stage``."""
        def work(conn: Connection) -> None:
            statement = dialect_insert(conn)(approvals).values(
                registry=registry, model=model, version=str(version), stage=_stage(stage),
                approved_at=self.now(conn))
            conn.execute(statement.on_conflict_do_update(
                index_elements=[approvals.c.registry, approvals.c.model, approvals.c.version,
                                approvals.c.stage],
                set_={"approved_at": statement.excluded.approved_at}))
        self._write(work, "record_own_approval")

    def claim_own_approval(self, registry: str, model: str, version: str, stage: str | None) -> bool:
        """True, once across every host, when the guard approved this very transition recently."""
        def work(conn: Connection) -> bool:
            oldest = self.now(conn) - OWN_APPROVAL_MAX_AGE_S
            conn.execute(delete(approvals).where(approvals.c.approved_at < oldest))
            # The delete is the claim: of two processes deleting the same row, one gets it.
            result = conn.execute(delete(approvals).where(
                approvals.c.registry == registry, approvals.c.model == model,
                approvals.c.version == str(version), approvals.c.stage == _stage(stage)))
            return result.rowcount == 1
        return self._write(work, "claim_own_approval")

    def publish_steps_done(self, publish_key: str) -> set[str]:
        """The steps of the publish ``publish_key`` already done (by any process, on any host)."""
        def work(conn: Connection) -> set[str]:
            return set(conn.execute(select(steps.c.step).where(steps.c.publish_key == publish_key)).scalars())
        return self._read(work, "publish_steps_done")

    def mark_publish_step(self, publish_key: str, step: str) -> None:
        """Record that ``step`` of the publish ``publish_key`` is done (recording it twice is harmless)."""
        def work(conn: Connection) -> None:
            statement = dialect_insert(conn)(steps).values(publish_key=publish_key, step=step,
                                                           done_at=self.now(conn))
            conn.execute(statement.on_conflict_do_nothing(index_elements=[steps.c.publish_key, steps.c.step]))
        self._write(work, "mark_publish_step")
