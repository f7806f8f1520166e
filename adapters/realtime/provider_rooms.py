"""The payload of `join_provider_room` / `leave_provider_room` and the commands it makes.

A provider's worker announces over Socket.IO that this connection serves the provider
`provider_name` (its full name `room:category:name`) for `worker_id`; the server then
enters (or leaves) the connection in `providers:<provider_name>`, where
`provider_request` is dispatched. zndraw-joblib 0.1.7 sends exactly these two fields
(and asks for no acknowledgement); anything else is refused as `invalid-payload`.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from workerledger.core import Actor, JoinProviderRoom, LeaveProviderRoom


class ProviderRoomPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider_name: str = Field(min_length=1)
    worker_id: str = Field(min_length=1)

    def join(self, sid: str, actor: Actor, now: datetime) -> JoinProviderRoom:
        return JoinProviderRoom(
            worker_id=self.worker_id,
            sid=sid,
            provider_name=self.provider_name,
            actor=actor,
            now=now,
        )

    def leave(self, sid: str, actor: Actor, now: datetime) -> LeaveProviderRoom:
        return LeaveProviderRoom(
            worker_id=self.worker_id,
            sid=sid,
            provider_name=self.provider_name,
            actor=actor,
            now=now,
        )
