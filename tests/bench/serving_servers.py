"""Servers the serving benchmark runs next to the real one, each in its own
process:

- ``echo``: the ceiling. The same services and method names as the real
  server, answering every call with a canned response captured from the
  real server (the same message sizes), with no work, no interceptor:
  ``--mode sync`` on a thread pool as the real server, ``--mode aio`` on
  grpc.aio.
- ``aio-service``: the real suggestion and safety servicers on grpc.aio,
  each call run inline on the event loop (one thread, no hand-offs), to
  compare that design with the threaded server by measurement. It keeps
  the request scope and latency metrics, but has no lanes: a slow call
  holds up every other one, and nothing is reserved for the send path.

- ``replica``: the production server as one of several read-only
  processes sharing a port (SO_REUSEPORT), for the multi-process design's
  ceiling: see ``run_replica``.

``python -m tests.bench.serving_servers echo --port P --responses DIR``
``python -m tests.bench.serving_servers aio-service --port P --snapshot DIR``
``python -m tests.bench.serving_servers replica --port P --snapshot DIR``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn

import grpc

from contactgraph.v1 import (
    safety_service_pb2,
    safety_service_pb2_grpc,
    suggestion_service_pb2,
    suggestion_service_pb2_grpc,
)

# method name -> (service, request class, file with the canned response)
ECHO_METHODS = {
    "SuggestContacts": ("contactgraph.v1.SuggestionService", suggestion_service_pb2.SuggestContactsRequest,
                        "suggest.bin"),
    "CheckMessaging": ("contactgraph.v1.SafetyService", safety_service_pb2.CheckMessagingRequest, "check.bin"),
    "BatchCheckMessaging": ("contactgraph.v1.SafetyService", safety_service_pb2.BatchCheckMessagingRequest,
                            "batch-check.bin"),
}
_OPTIONS = [("grpc.so_reuseport", 0)]


def _ready(port: int) -> None:
    print(f"ready on 127.0.0.1:{port}", flush=True)


def _echo_handlers(responses: Path, make: Callable[[bytes], Callable[..., Any]]) -> list[grpc.GenericRpcHandler]:
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for method, (service, request_type, file) in ECHO_METHODS.items():
        canned = (responses / file).read_bytes()
        # Requests are parsed (as the real server does); the response is
        # sent as the captured bytes.
        by_service.setdefault(service, {})[method] = grpc.unary_unary_rpc_method_handler(
            make(canned), request_deserializer=request_type.FromString, response_serializer=None)
    return [grpc.method_handlers_generic_handler(s, h) for s, h in by_service.items()]


def run_echo(port: int, responses: Path, mode: str, workers: int, interceptor: bool) -> None:
    if mode == "sync":
        def make(canned: bytes) -> Callable[..., Any]:
            return lambda request, context: canned

        if interceptor:
            # The real server's interceptor (lanes with the serve defaults,
            # request scope, metrics) around the echo: its cost per call.
            from service.server.config import ServerConfig
            from service.server.interceptors import ServingInterceptor
            from service.server.lanes import Lanes
            from service.server.metrics import ServerMetrics

            lanes = Lanes(ServerConfig(snapshot=responses, workers=workers))
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=lanes.max_concurrent_rpcs()),
                                 options=_OPTIONS, interceptors=[ServingInterceptor(ServerMetrics(), lanes.by_name)],
                                 maximum_concurrent_rpcs=lanes.max_concurrent_rpcs())
        else:
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=_OPTIONS)
        for h in _echo_handlers(responses, make):
            server.add_generic_rpc_handlers((h,))
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        _ready(bound)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
        server.stop(0).wait()
        return

    async def main() -> None:
        def make(canned: bytes) -> Callable[..., Any]:
            async def answer(request: Any, context: Any) -> bytes:
                return canned
            return answer

        server = grpc.aio.server(options=_OPTIONS)
        for h in _echo_handlers(responses, make):
            server.add_generic_rpc_handlers((h,))
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        _ready(bound)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(0)

    asyncio.run(main())


# --- the real servicers on grpc.aio ------------------------------------------------


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str, trailing: Any = ()) -> None:
        super().__init__(details)
        self.code, self.details, self.trailing = code, details, trailing


class _InlineContext:
    """What the sync servicers call on their context, over an aio context,
    for a call run inline on the event loop."""

    def __init__(self, context: Any) -> None:
        self._context = context

    def abort_with_status(self, status: Any) -> NoReturn:
        raise _Abort(status.code, status.details, status.trailing_metadata)

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise _Abort(code, details)

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()

    def time_remaining(self) -> float | None:
        return self._context.time_remaining()  # type: ignore[no-any-return]

    def is_active(self) -> bool:
        return True  # inline: nothing else runs until the call returns

    def code(self) -> Any:
        return None

    def peer(self) -> str:
        return str(self._context.peer())


class _Capture:
    """Stands in for a grpc server to collect a servicer's method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, dict[str, grpc.RpcMethodHandler]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.handlers[service] = handlers


def run_aio_service(port: int, snapshot: Path) -> None:
    from graph.clock import SystemClock
    from service.server.config import ServerConfig
    from service.server.metrics import ServerMetrics
    from service.server.request_scope import RequestScope, open_scope
    from service.server.server import build_safety
    from service.server.state import ServingState
    from service.servicers import SuggestionServicer
    from service.servicers.safety import SafetyServicer

    config = ServerConfig(snapshot=snapshot, port=port)
    clock = SystemClock()
    state = ServingState.load(snapshot, config.graph, clock, safety=build_safety(config, clock))
    metrics = ServerMetrics()
    capture = _Capture()
    suggestion_service_pb2_grpc.add_SuggestionServiceServicer_to_server(
        SuggestionServicer(lambda: state, config), capture)
    safety_service_pb2_grpc.add_SafetyServiceServicer_to_server(SafetyServicer(lambda: state), capture)

    def inline(label: str, behavior: Callable[[Any, Any], Any]) -> Callable[..., Any]:
        async def handle(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            code = "OK"
            try:
                with open_scope(RequestScope(None, context.time_remaining)) as scope:
                    response = behavior(request, _InlineContext(context))
                    if scope.counts:
                        metrics.observe_counts(scope.counts)
                    return response
            except _Abort as err:
                code = err.code.name
                await context.abort(err.code, err.details, err.trailing)
            finally:
                metrics.observe(label, code, time.perf_counter() - started)
        return handle

    async def main() -> None:
        server = grpc.aio.server(options=_OPTIONS)
        for service, handlers in capture.handlers.items():
            wrapped = {
                name: grpc.unary_unary_rpc_method_handler(
                    inline(f"{service.rsplit('.', 1)[-1]}/{name}", h.unary_unary),
                    request_deserializer=h.request_deserializer, response_serializer=h.response_serializer)
                for name, h in handlers.items()
            }
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, wrapped),))
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        _ready(bound)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(0)

    asyncio.run(main())


def run_replica(port: int, snapshot: Path) -> None:
    """The production server (lanes, interceptor, metrics) as one of several
    read-only replicas on one port (SO_REUSEPORT: the kernel spreads
    connections over them). Each holds its own copy of the state, so this
    bounds what a multi-process design could serve; one that keeps blocks
    consistent would also have every replica follow the writer's log."""
    from graph.clock import SystemClock
    from service.server.config import ServerConfig
    from service.server.server import Server, build_safety
    from service.server.state import ServingState

    class Replica(Server):
        SHARES_PORT = True

    config = ServerConfig(snapshot=snapshot, port=port)
    clock = SystemClock()
    state = ServingState.load(snapshot, config.graph, clock, safety=build_safety(config, clock))
    server = Replica(config, state)
    server.start()
    gc.freeze()
    _ready(server.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="kind", required=True)
    p = sub.add_parser("echo")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--responses", required=True, type=Path)
    p.add_argument("--mode", choices=["sync", "aio"], default="sync")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--interceptor", action="store_true", help="sync only: wrap in the serving interceptor")
    p = sub.add_parser("aio-service")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--snapshot", required=True, type=Path)
    p = sub.add_parser("replica")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--snapshot", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.kind == "echo":
        run_echo(args.port, args.responses, args.mode, args.workers, args.interceptor)
    elif args.kind == "replica":
        run_replica(args.port, args.snapshot)
    else:
        run_aio_service(args.port, args.snapshot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
