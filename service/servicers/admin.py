"""AdminService: operating the server (snapshot hot swap)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import grpc

from contactgraph.v1 import admin_service_pb2, admin_service_pb2_grpc
from graph.errors import SnapshotError, WalError, WalGapError
from service.durability.hot_swap import Swapped
from service.safety.policy import PolicyError, PolicyHolder
from service.server.config import confined
from service.server.status import abort, invalid_argument

log = logging.getLogger(__name__)


class AdminServicer(admin_service_pb2_grpc.AdminServiceServicer):
    """``snapshot_roots``: the directories snapshots may be loaded from;
    ``policy_root``: the one policy files may be read from (None: no file
    may be named). A path outside them is PERMISSION_DENIED, whether or not
    it exists, and no error names any path outside them."""

    def __init__(self, load_snapshot: Callable[[Path], Swapped], policy: Callable[[], PolicyHolder], *,
                 snapshot_roots: tuple[Path, ...], policy_root: Path | None) -> None:
        self._load_snapshot = load_snapshot
        self._policy = policy
        self._snapshot_roots = snapshot_roots
        self._policy_roots = (policy_root,) if policy_root is not None else ()

    def ReloadPolicy(self, request: admin_service_pb2.ReloadPolicyRequest,
                     context: grpc.ServicerContext) -> admin_service_pb2.ReloadPolicyResponse:
        holder = self._policy()
        path = None
        if request.path:
            path = confined(request.path, self._policy_roots)
            if path is None:
                _outside(context, "the policy file's directory given at start" if self._policy_roots else
                         "no policy directory: the server was started without a policy file")
        try:
            policy = holder.reload(path)
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
        path = confined(request.path, self._snapshot_roots)
        if path is None:
            _outside(context, "the served snapshot's directory or the data directory")
        try:
            swapped = self._load_snapshot(path)
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
        except Exception:  # anything else is INTERNAL with a logged traceback
            log.exception("LoadSnapshot %s failed", request.path)
            abort(context, grpc.StatusCode.INTERNAL, "internal error; the current snapshot keeps serving",
                  "INTERNAL")
        return admin_service_pb2.LoadSnapshotResponse(
            snapshot_id=swapped.snapshot_id, watermark=swapped.watermark, replayed=swapped.replayed)


def _outside(context: grpc.ServicerContext, allowed: str) -> NoReturn:
    # The answer is the same whether the path exists or not, and names no
    # path: it must not tell a caller what lies outside the allowed tree.
    log.warning("admin call refused: path outside the allowed directories")
    abort(context, grpc.StatusCode.PERMISSION_DENIED,
          f"path: outside the directories this server may read ({allowed}); symlinks and '..' are resolved first",
          "PATH_NOT_ALLOWED", field="path")
