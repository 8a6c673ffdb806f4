"""Run a function of template.yaml under the AWS Lambda Runtime Interface Emulator, without Docker.

The emulator (`aws-lambda-rie`, shipped inside aws-sam-cli: `make tools`) is Lambda's own runtime API
in one binary. It starts the runtime on the first invocation — here `awslambdaric`, the Python
runtime interface client, under Python 3.12 (`make lambda-runtime`: .work/lambda-runtime) — and
serves repeated invocations to the same warm process, as a Lambda container does.

The runtime is started through a small bootstrap that timestamps (CLOCK_MONOTONIC, comparable
across processes) when the interpreter starts, when the handler module is imported and each time
the runtime asks for an event or gets one. The emulator's own REPORT "Init Duration" leaves out the
Python import, so init is measured here: from the invocation that starts the runtime process until
the runtime first asks for an event.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from anime_pipeline.function_spec import (
    FunctionSpec,
    LambdaLayout,
    assemble_layout,
    check_architecture,
    check_layers_built,
)
from anime_pipeline.paths import REPO_ROOT

LOOPBACK = "127.0.0.1"
TOOLS_VENV = REPO_ROOT / ".work" / "tools-venv"
RUNTIME_VENV = REPO_ROOT / ".work" / "lambda-runtime"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
_RIE_BINARIES = {
    "x86_64": "aws-lambda-rie-x86_64",
    "amd64": "aws-lambda-rie-x86_64",
    "aarch64": "aws-lambda-rie-arm64",
    "arm64": "aws-lambda-rie-arm64",
}

# Lambda's bootstrap for Python, plus timestamps: it runs awslambdaric as `python -m awslambdaric` does.
BOOTSTRAP = """\
import time
_STARTED = time.monotonic()
import os
import sys
import uuid

sys.path.pop(0)  # this script's folder: not on Lambda's path
_marks = open(os.environ.pop("ANIME_INVOKE_MARKS"), "a", buffering=1)
_traced = os.environ.pop("ANIME_INVOKE_TRACED", "") == "1"
_marks.write(f"interpreter {_STARTED!r}\\n")

from awslambdaric import __main__ as ric, bootstrap, lambda_runtime_client

_get_handler = bootstrap._get_handler
_wait_next = lambda_runtime_client.BaseLambdaRuntimeClient.wait_next_invocation


def _timed_get_handler(handler):
    try:
        return _get_handler(handler)
    finally:
        _marks.write(f"handler {time.monotonic()!r}\\n")


def _timed_wait_next(self):
    _marks.write(f"next {time.monotonic()!r}\\n")
    request = _wait_next(self)
    _marks.write(f"event {time.monotonic()!r}\\n")
    if _traced and request.x_amzn_trace_id is None:
        # Lambda sends every event of an actively traced function with a trace id; the emulator
        # sends none, and X-Ray's SDK would take every request for the init phase.
        request.x_amzn_trace_id = (
            f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=1"
        )
    return request


bootstrap._get_handler = _timed_get_handler
lambda_runtime_client.BaseLambdaRuntimeClient.wait_next_invocation = _timed_wait_next
ric.main(sys.argv)
"""


class EmulatorSetupError(RuntimeError):
    """The emulator or the Python runtime is not installed, or the emulator did not start."""


class InvocationError(RuntimeError):
    """The emulator did not answer an invocation."""


@dataclass(frozen=True)
class InitTimings:
    """The cold start of the runtime process, in milliseconds from the invocation that started it."""

    interpreter_ms: float  # the bootstrap's first line runs (process start + interpreter start-up)
    handler_imported_ms: float  # the handler module is imported (the function's own init done)
    init_ms: float  # the runtime asks for its first event


@dataclass(frozen=True)
class Invocation:
    """One invocation through the emulator."""

    payload: Any  # the function's response (JSON-decoded) or Lambda's error object
    function_error: bool  # the function raised, failed to init or timed out
    roundtrip_ms: float  # POST to response through the emulator (the first one includes init)
    duration_ms: float | None  # the runtime got the event → asked for the next one (Lambda's Duration)
    init: InitTimings | None  # only for the invocation that started the runtime

    @property
    def status_code(self) -> int | None:
        """An API Gateway proxy response's statusCode, if the payload is one."""
        code = self.payload.get("statusCode") if isinstance(self.payload, dict) else None
        return int(code) if code is not None else None

    @property
    def body(self) -> Any:
        """An API Gateway proxy response's body, JSON-decoded when it is JSON."""
        if not isinstance(self.payload, dict) or not isinstance(self.payload.get("body"), str):
            return None
        try:
            return json.loads(self.payload["body"])
        except json.JSONDecodeError:
            return self.payload["body"]


def find_rie(tools_venv: Path = TOOLS_VENV) -> Path:
    """The emulator binary for this machine inside aws-sam-cli; EmulatorSetupError when absent."""
    name = _RIE_BINARIES.get(platform.machine().lower())
    if name is None:
        raise EmulatorSetupError(f"no aws-lambda-rie build for this machine ({platform.machine()})")
    found = sorted(tools_venv.glob(f"lib/python*/site-packages/samcli/local/rapid/{name}"))
    if not found:
        raise EmulatorSetupError(f"{name} not found in {tools_venv} (aws-sam-cli): run `make tools`")
    return found[-1]


def find_runtime_python(version: str, runtime_venv: Path = RUNTIME_VENV) -> Path:
    """Python `version` with awslambdaric (the runtime venv); EmulatorSetupError when absent."""
    python = runtime_venv / "bin" / f"python{version}"
    if not python.is_file() or not list(runtime_venv.glob(f"lib/python{version}/site-packages/awslambdaric")):
        raise EmulatorSetupError(
            f"no Python {version} runtime with awslambdaric in {runtime_venv}: run `make lambda-runtime`"
        )
    return python


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _passthrough_env() -> dict[str, str]:
    """What a local run takes from the caller: credentials (Lambda's come from the role) and region."""
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
    env = {key: os.environ[key] for key in keys if key in os.environ}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return env | {"AWS_REGION": region, "AWS_DEFAULT_REGION": region}


def lambda_environment(
    spec: FunctionSpec, layout: LambdaLayout, runtime_python: Path, overrides: Mapping[str, str]
) -> dict[str, str]:
    """The runtime's environment: Lambda's reserved variables, the template's, then `overrides`."""
    python = spec.python_version
    env = _passthrough_env() | {
        "PATH": os.pathsep.join(
            [str(runtime_python.parent), "/usr/local/bin", "/usr/bin", "/bin", f"{layout.opt}/bin"]
        ),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LD_LIBRARY_PATH": f"{layout.task}/lib:{layout.opt}/lib",
        # Lambda's search path: the code, then the layers, then the runtime's own packages (boto3).
        "PYTHONPATH": os.pathsep.join(
            [
                str(layout.task),
                f"{layout.opt}/python/lib/python{python}/site-packages",
                f"{layout.opt}/python",
            ]
        ),
        # /var/task and /opt are read-only on Lambda: .pyc files shipped in the layers are used,
        # nothing new is written (nor into this repository's folders behind the symlinks).
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAMBDA_TASK_ROOT": str(layout.task),
        "LAMBDA_RUNTIME_DIR": str(runtime_python.parent.parent),
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout_s),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.logical_id}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "_HANDLER": spec.handler,
    }
    if spec.tracing:
        # Tracing: Active — Lambda runs an X-Ray daemon beside the function; nothing listens here
        # and the SDK's UDP datagrams are dropped, but the function initialises as it does on Lambda.
        env |= {"AWS_XRAY_DAEMON_ADDRESS": f"{LOOPBACK}:2000", "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR"}
    env |= {name: layout.localise(value) for name, value in spec.environment.items()}
    return env | {name: layout.localise(value) for name, value in overrides.items()}


def _has_fileno(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.fileno() >= 0
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return False


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")


def _is_lambda_error(payload: Any) -> bool:
    """Lambda's error object: what an invocation returns when the function raised or failed to init."""
    return isinstance(payload, dict) and {"errorMessage", "errorType"} <= payload.keys()


class LambdaEmulator:
    """One function's execution environment: start it, invoke it any number of times, stop it.

    Use as a context manager. The scratch folder (code and layers as symlinks, the runtime's
    bootstrap and timestamps, the emulator's log) is removed on stop.
    """

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        env: Mapping[str, str] | None = None,
        layer_overrides: Mapping[str, Path] | None = None,
        log: IO[str] | None = None,
    ) -> None:
        """Args:
        spec: the function (`function_spec.read_function`).
        env: environment variables over the template's (e.g. endpoints, ARTIFACTS_DIR).
        layer_overrides: layer logical id → folder to use as its content (see `assemble_layout`).
        log: where the emulator's and the function's output goes (default: a file in the scratch
            folder, read back with `log_text`; a stream without a file descriptor gets it on stop).
        """
        self.spec = spec
        self._env = dict(env or {})
        self._layer_overrides = dict(layer_overrides or {})
        self._log_stream = log
        self._process: subprocess.Popen[bytes] | None = None
        self._scratch: Path | None = None
        self._marks_read = 0
        self._started_at: float | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LambdaEmulator:
        """Assemble the layout and start the emulator (the runtime starts on the first invocation).

        Raises:
            FunctionSpecError, LayersNotBuiltError: the function or its layers are not runnable.
            EmulatorSetupError: the emulator or the runtime is missing, or the emulator did not start.
        """
        check_architecture(self.spec)
        check_layers_built(self.spec, self._layer_overrides)  # before the tools: the likelier miss
        rie = find_rie()
        python = find_runtime_python(self.spec.python_version)
        self._scratch = Path(tempfile.mkdtemp(prefix=f"lambda-{self.spec.logical_id}-"))
        try:
            self._launch(rie, python)
        except BaseException:
            self.stop()  # nothing left behind: no process, no scratch folder
            raise
        return self

    def _launch(self, rie: Path, python: Path) -> None:
        assert self._scratch is not None
        layout = assemble_layout(self.spec, self._scratch / "lambda", self._layer_overrides)
        bootstrap = self._scratch / "runtime" / "bootstrap.py"
        bootstrap.parent.mkdir()
        bootstrap.write_text(BOOTSTRAP, encoding="utf-8")
        self._marks.touch()
        env = lambda_environment(self.spec, layout, python, self._env) | {
            "ANIME_INVOKE_MARKS": str(self._marks),
            "ANIME_INVOKE_TRACED": "1" if self.spec.tracing else "0",
        }
        self.port, runtime_api_port = free_port(), free_port()
        log = self._log_stream if _has_fileno(self._log_stream) else None
        log = log or (self._scratch / "emulator.log").open("w", encoding="utf-8")
        command = [
            str(rie),
            "--log-level",
            "error",
            "--runtime-interface-emulator-address",
            f"{LOOPBACK}:{self.port}",
            "--runtime-api-address",
            f"{LOOPBACK}:{runtime_api_port}",
            str(python),
            str(bootstrap),
            self.spec.handler,
        ]
        # Own process group: stop() ends the emulator and the runtime it started, nothing else.
        self._process = subprocess.Popen(
            command, cwd=layout.task, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if log is not self._log_stream:
            log.close()
        self._wait_listening(timeout_s=10.0)

    def stop(self) -> None:
        """Stop the emulator and the runtime, and remove the scratch folder."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if self._log_stream is not None and not _has_fileno(self._log_stream):
            self._log_stream.write(self.log_text())  # a stream without a file descriptor gets it now
        self._remove_scratch()

    def __enter__(self) -> LambdaEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ invocations

    def invoke(self, event: Any) -> Invocation:
        """Send one event (JSON-serialisable) and wait for the function's response.

        Raises:
            InvocationError: the emulator is not running or did not answer.
        """
        if self._process is None or self._process.poll() is not None:
            raise InvocationError(f"the emulator is not running{self._log_tail()}")
        request = urllib.request.Request(
            f"http://{LOOPBACK}:{self.port}{INVOKE_PATH}",
            data=json.dumps(event).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        cold = self._started_at is None
        sent = time.monotonic()
        if cold:
            self._started_at = sent
        try:
            # Init has Lambda's own 10 s limit besides the function's timeout.
            with urllib.request.urlopen(request, timeout=self.spec.timeout_s + 15) as response:
                raw = response.read()
                error_header = response.headers.get("X-Amz-Function-Error")
        except urllib.error.HTTPError as exc:
            # A failed init comes back as 502 with Lambda's error object (errorType, errorMessage).
            raw, error_header = exc.read(), f"HTTP {exc.code}"
            if not _is_lambda_error(_json_or_none(raw)):
                raise InvocationError(f"the emulator answered {exc}{self._log_tail()}") from exc
        except (urllib.error.URLError, TimeoutError) as exc:
            raise InvocationError(f"no answer from the emulator: {exc}{self._log_tail()}") from exc
        roundtrip_ms = (time.monotonic() - sent) * 1000.0
        payload = _json_or_none(raw)
        function_error = bool(error_header) or _is_lambda_error(payload)
        marks = self._new_marks(wait_for_next=not function_error)
        events = [t for name, t in marks if name == "event"]
        nexts = [t for name, t in marks if name == "next"]
        duration_ms = (
            (nexts[-1] - events[-1]) * 1000.0 if events and nexts and nexts[-1] > events[-1] else None
        )
        init = self._init_timings(marks, sent) if cold else None
        return Invocation(payload, function_error, roundtrip_ms, duration_ms, init)

    def log_text(self) -> str:
        """The emulator's and the function's output so far (when it goes to the scratch file)."""
        path = self._scratch / "emulator.log" if self._scratch else None
        return path.read_text(encoding="utf-8", errors="replace") if path and path.exists() else ""

    # ------------------------------------------------------------------ internals

    @property
    def _marks(self) -> Path:
        assert self._scratch is not None
        return self._scratch / "runtime" / "marks"

    def _new_marks(self, *, wait_for_next: bool, timeout_s: float = 5.0) -> list[tuple[str, float]]:
        """The bootstrap's timestamps since the last call; waits for the runtime's next `next`."""
        deadline = time.monotonic() + timeout_s
        while True:
            # Only whole lines: the bootstrap may be writing the last one right now.
            lines = self._marks.read_text(encoding="utf-8").split("\n")[:-1]
            fresh = lines[self._marks_read :]
            names = [line.split(" ")[0] for line in fresh]
            # The runtime asks for the next event right after posting this one's response.
            done = not wait_for_next or ("event" in names and names[-1] == "next")
            if done or time.monotonic() > deadline or (self._process and self._process.poll() is not None):
                self._marks_read += len(fresh)
                return [(name, float(value)) for name, value in (line.split(" ") for line in fresh)]
            time.sleep(0.002)

    @staticmethod
    def _init_timings(marks: list[tuple[str, float]], sent: float) -> InitTimings | None:
        named = dict(reversed(marks))  # the first occurrence of each name
        if not {"interpreter", "handler", "next"} <= named.keys():
            return None
        return InitTimings(
            interpreter_ms=(named["interpreter"] - sent) * 1000.0,
            handler_imported_ms=(named["handler"] - sent) * 1000.0,
            init_ms=(named["next"] - sent) * 1000.0,
        )

    def _wait_listening(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                code = self._process.returncode
                raise EmulatorSetupError(f"aws-lambda-rie exited ({code}) before listening{self._log_tail()}")
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.01)
        raise EmulatorSetupError(
            f"aws-lambda-rie did not listen on {LOOPBACK}:{self.port} within {timeout_s:.0f} s"
        )

    def _log_tail(self) -> str:
        tail = self.log_text()[-2000:]
        return f"\n{tail}" if tail else ""

    def _remove_scratch(self) -> None:
        scratch, self._scratch = self._scratch, None
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
