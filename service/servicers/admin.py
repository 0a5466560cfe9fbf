"""AdminService: operating the server (snapshot hot swap)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import grpc

from contactgraph.v1 import admin_service_pb2, admin_service_pb2_grpc
from graph.errors import SnapshotError, WalError, WalGapError

from service.durability.hot_swap import Swapped
from service.safety.policy import PolicyError, PolicyHolder
from service.server.status import abort, invalid_argument

log = logging.getLogger(__name__)


class AdminServicer(admin_service_pb2_grpc.AdminServiceServicer):
    def __init__(self, load_snapshot: Callable[[Path], Swapped], policy: Callable[[], PolicyHolder]) -> None:
        self._load_snapshot = load_snapshot
        self._policy = policy

    def ReloadPolicy(self, request: admin_service_pb2.ReloadPolicyRequest,
                     context: grpc.ServicerContext) -> admin_service_pb2.ReloadPolicyResponse:
        holder = self._policy()
        try:
            policy = holder.reload(Path(request.path) if request.path else None)
        except PolicyError as err:
            log.error("policy reload refused, keeping %s: %s", holder.current.version, err)
            abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                  f"policy refused, {holder.current.version} stays in force: {err}", "POLICY_REFUSED")
        log.info("policy reloaded", extra={"fields": {"policy_version": policy.version}})
        return admin_service_pb2.ReloadPolicyResponse(policy_version=policy.version)

    def LoadSnapshot(self, request: admin_service_pb2.LoadSnapshotRequest,
                     context: grpc.ServicerContext) -> admin_service_pb2.LoadSnapshotResponse:
        if not request.path:
            invalid_argument(context, "path", "must name a snapshot directory on the server")
        try:
            swapped = self._load_snapshot(Path(request.path))
        except SnapshotError as err:
            log.warning("LoadSnapshot %s refused: %s", request.path, err)
            abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                  f"snapshot refused, the current one keeps serving: {err}", "SNAPSHOT_REFUSED", path=request.path)
        except WalGapError as err:
            log.warning("LoadSnapshot %s refused: %s", request.path, err)
            abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                  f"snapshot is older than the write-ahead log reaches back; the current one keeps serving: {err}",
                  "WAL_GAP", path=request.path)
        except WalError as err:
            log.warning("LoadSnapshot %s refused: %s", request.path, err)
            abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                  f"the write-ahead log cannot be replayed onto this snapshot; the current one keeps serving: {err}",
                  "WAL_REPLAY_FAILED", path=request.path)
        except Exception:  # noqa: BLE001 - anything else is INTERNAL with a logged traceback
            log.exception("LoadSnapshot %s failed", request.path)
            abort(context, grpc.StatusCode.INTERNAL, "internal error; the current snapshot keeps serving",
                  "INTERNAL")
        return admin_service_pb2.LoadSnapshotResponse(
            snapshot_id=swapped.snapshot_id, watermark=swapped.watermark, replayed=swapped.replayed)
