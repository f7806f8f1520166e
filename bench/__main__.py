"""`python -m bench [--quick] [--only NAME ...] [-- ARGS ...]`: run the benchmark suite.

Every module `bench/bench_*.py` is imported and its `main(argv)` called in turn (with
`--quick` passed through, and any ARGS after `--`); each writes
bench/results/<topic>.json. Then bench/report.py rewrites BENCHMARKS.md at the
repository root from all result files, including those of modules not run this time.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

from bench import report

BENCH = Path(__file__).resolve().parent


def discover() -> list[str]:
    return [path.stem for path in sorted(BENCH.glob("bench_*.py"))]


def resolve(names: list[str], available: list[str]) -> list[str]:
    chosen: list[str] = []
    for name in names:
        module = name if name.startswith("bench_") else f"bench_{name}"
        module = module.removesuffix(".py")
        if module not in available:
            raise SystemExit(
                f"no benchmark module {name!r}; available: "
                + ", ".join(m.removeprefix("bench_") for m in available)
            )
        chosen.append(module)
    return chosen


def run_module(module: str, argv: list[str]) -> tuple[int, str | None]:
    try:
        loaded = importlib.import_module(f"bench.{module}")
        code = loaded.main(argv)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except Exception as error:
        traceback.print_exc()
        return 1, f"{module} raised {error!r}"
    code = int(code or 0)
    return code, None if code == 0 else f"{module} exited with {code}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (passed through)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="e.g. peer store")
    parser.add_argument("--list", action="store_true", help="list the modules and exit")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite BENCHMARKS.md")
    parser.add_argument("--results-dir", type=Path, help="read/write results here")
    parser.add_argument("--output", type=Path, help="default: BENCHMARKS.md at the repo root")
    args = parser.parse_args(argv)

    available = discover()
    if args.list:
        print("\n".join(m.removeprefix("bench_") for m in available))
        return 0
    modules = resolve(args.only, available) if args.only else available
    if args.results_dir is not None:
        os.environ[report.RESULTS_ENV] = str(args.results_dir.resolve())
    module_argv = (["--quick"] if args.quick else []) + passthrough

    failures: list[str] = []
    suite_started = time.perf_counter()
    for index, module in enumerate(modules, start=1):
        shown = " ".join(["python -m bench." + module, *module_argv])
        print(f"\n=== [{index}/{len(modules)}] {module}: {shown}", flush=True)
        started = time.perf_counter()
        code, failure = run_module(module, module_argv)
        took = time.perf_counter() - started
        status = "ok" if code == 0 else f"FAILED ({failure})"
        print(f"=== [{index}/{len(modules)}] {module}: {status} in {took:.1f} s", flush=True)
        if failure:
            failures.append(failure)

    total = time.perf_counter() - suite_started
    print(f"\n=== {len(modules)} module(s) in {total:.1f} s, {len(failures)} failed", flush=True)
    if not args.no_report:
        written = report.write(args.output, args.results_dir, failures)
        print(f"=== wrote {written}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
