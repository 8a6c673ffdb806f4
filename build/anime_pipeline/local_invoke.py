"""`anime-build invoke`: run one event through a function the way Lambda runs it, without Docker.

template.yaml says what runs (`function_spec`): the handler, the code folder, the layers merged into
/opt and the environment. The Runtime Interface Emulator runs it under Python 3.12 (`emulator`).
Prints the function's response on stdout and the measured init and request times on stderr.

`make invoke EVENT=events/similar.json [FUNCTION=DeltaUpdateFunction]` calls this.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from anime_pipeline.deploy_check import DEFAULT_TEMPLATE
from anime_pipeline.emulator import EmulatorSetupError, Invocation, InvocationError, LambdaEmulator
from anime_pipeline.function_spec import FunctionSpecError, LayersNotBuiltError, read_function

DEFAULT_FUNCTION = "ApiFunction"


class EventError(ValueError):
    """The event file is missing or not a JSON document."""


def load_event_file(path: Path) -> Any:
    """The JSON event in `path`; EventError saying what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EventError(f"event file {path} not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise EventError(f"event file {path} cannot be read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventError(f"event file {path} is not valid JSON: {exc}") from None


def _pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise FunctionSpecError(f"{what} {value!r}: expected NAME=VALUE")
        pairs[name] = rest
    return pairs


def readable_response(payload: Any) -> Any:
    """The response with an API Gateway proxy body decoded when it is JSON text (for reading)."""
    if (
        isinstance(payload, dict)
        and isinstance(payload.get("body"), str)
        and not payload.get("isBase64Encoded")
    ):
        try:
            return payload | {"body": json.loads(payload["body"])}
        except json.JSONDecodeError:
            return payload
    return payload


def timing_summary(function: str, invocation: Invocation) -> str:
    """One line: init (and its parts), the request's time in the function, the round trip."""
    parts = [function]
    if invocation.init is not None:
        init = invocation.init
        parts.append(
            f"init {init.init_ms:.0f} ms (interpreter up at {init.interpreter_ms:.0f} ms, "
            f"handler imported at {init.handler_imported_ms:.0f} ms)"
        )
    if invocation.duration_ms is not None:
        parts.append(f"request {invocation.duration_ms:.1f} ms in the function")
    parts.append(f"{invocation.roundtrip_ms:.0f} ms round trip")
    if invocation.status_code is not None:
        parts.append(f"status {invocation.status_code}")
    return ", ".join(parts)


def run(args: argparse.Namespace) -> int:
    """`anime-build invoke`: 0 on a response, 1 on a function error, 2 when it cannot run."""
    try:
        event = load_event_file(Path(args.event))
        spec = read_function(args.function, Path(args.template), parameters=_pairs(args.param, "--param"))
        layers = {name: Path(folder) for name, folder in _pairs(args.layer, "--layer").items()}
        with LambdaEmulator(
            spec, env=_pairs(args.env, "--env"), layer_overrides=layers, log=sys.stderr
        ) as emu:
            invocation = emu.invoke(event)
    except (EventError, FunctionSpecError, LayersNotBuiltError, EmulatorSetupError, InvocationError) as exc:
        sys.stderr.write(f"invoke: {exc}\n")
        return 2
    shown = invocation.payload if args.raw else readable_response(invocation.payload)
    sys.stdout.write(json.dumps(shown, indent=2, ensure_ascii=False) + "\n")
    sys.stderr.write(timing_summary(spec.logical_id, invocation) + "\n")
    return 1 if invocation.function_error else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `anime-build invoke`."""
    parser = subparsers.add_parser(
        "invoke",
        help="run an event through a function as Lambda does (Runtime Interface Emulator, no Docker)",
        description="Read the function's handler, code, layers and environment from template.yaml, lay "
        "out the code and the built layers as Lambda's /var/task and /opt, start the AWS Lambda Runtime "
        "Interface Emulator (from aws-sam-cli, `make tools`) with awslambdaric under Python 3.12 (`make "
        "lambda-runtime`), send the event and print the response (stdout) and the measured init and "
        "request times (stderr). Exits 1 on a function error, 2 when the function cannot be run.",
    )
    parser.add_argument("event", help="JSON event file, e.g. events/similar.json")
    parser.add_argument(
        "--function", default=DEFAULT_FUNCTION, help="logical id in the template (default: %(default)s)"
    )
    parser.add_argument(
        "--template", default=str(DEFAULT_TEMPLATE), help="SAM template (default: %(default)s)"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment variable over the template's, e.g. CACHE_ENDPOINT_URL=http://127.0.0.1:5000 "
        "(repeatable; a value under /opt or /var/task points into the local layout)",
    )
    parser.add_argument(
        "--layer",
        action="append",
        default=[],
        metavar="LAYER=FOLDER",
        help="use FOLDER as a layer's content, e.g. ArtifactsLayer=DIR holding anime-artifacts/ (repeatable)",
    )
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="template parameter override"
    )
    parser.add_argument("--raw", action="store_true", help="print the response as the function returned it")
    parser.set_defaults(func=run)
