"""Entrypoint: ``python -m harness run|convert|serve|serve-export --spec JSON``.

Exit codes: 0 result sent; 2 bad spec; 3 the run failed for a stated reason (error line sent).
"""

from __future__ import annotations

import argparse
import sys
import traceback

from harness import progress
from harness.engines.base import EngineError
from harness.protocol import ConvertSpec, Emitter, LmExportSpec, ProtocolError, RunSpec, ServeSpec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness")
    parser.add_argument("command", choices=["run", "convert", "serve", "serve-export"])
    parser.add_argument("--spec", required=True, help="the spec as JSON (harness/protocol.py)")
    args = parser.parse_args(argv)
    # Keep protocol lines on the real stdout; frameworks that print go to stderr with the logs.
    emit = Emitter(sys.stdout)
    sys.stdout = sys.stderr
    progress.set_sink(emit.progress)
    try:
        if args.command == "run":
            from harness.run import run

            emit.result(run(RunSpec.from_json(args.spec), emit))
        elif args.command == "serve":
            from harness.serving.formats import OWN_SERVER_REQUEST

            spec = ServeSpec.from_json(args.spec)
            if spec.engine in OWN_SERVER_REQUEST:
                from harness.serving.own_server import serve_own

                emit.result(serve_own(spec, emit))
            else:
                from harness.serving.server import serve

                emit.result(serve(spec, emit))
        elif args.command == "serve-export":
            from harness.serving.export import export_lm

            emit.result(export_lm(LmExportSpec.from_json(args.spec), emit))
        else:
            from harness.convert import convert

            emit.result(convert(ConvertSpec.from_json(args.spec), emit))
    except ProtocolError as exc:
        emit.error("protocol", str(exc))
        return 2
    except EngineError as exc:  # a stated reason (bad weights, missing provider): no traceback
        print(f"error: {exc}", file=sys.stderr)
        emit.error(type(exc).__name__, str(exc))
        return 3
    except (KeyError, ImportError, MemoryError) as exc:
        traceback.print_exc(file=sys.stderr)
        emit.error(type(exc).__name__, str(exc).strip("'\""))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
