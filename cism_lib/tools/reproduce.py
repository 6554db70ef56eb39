"""`make reproduce`: execute every numbered notebook headlessly with papermill, in order, and
write a static HTML report of the executed copies (build/<profile>/index.html)."""
from __future__ import annotations

import argparse
import html
import os
import sys
import time
from pathlib import Path

from cism_lib.config import PROFILES  # config imports no torch: a quick start

# Seconds one cell may run before papermill gives up on it. The cpu profile's longest cell (a
# table's training runs) took about 10 minutes on 2 cores; papermill/nbclient can wait forever on
# a kernel that has gone idle (nteract/papermill#711; seen here in 11_explore's ipywidgets cell,
# which headless runs now skip), and a timed-out notebook is run once more (finished runs are
# cached, so that is quick).
CELL_TIMEOUT = {"smoke": 900, "cpu": 3600, "paper": None, "isaid512": 6 * 3600}


def notebooks(folder: Path, only: str | None = None) -> list[Path]:
    """The numbered notebooks of a folder, sorted; `only` filters by substring."""
    books = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    return [p for p in books if only is None or only in p.name]


def run_notebook(path: Path, out_dir: Path, profile: str, cell_timeout: float | None = None,
                 attempts: int = 2) -> float:
    """Execute one notebook with papermill; a failure names the notebook and cell.

    A cell that runs past `cell_timeout` seconds makes the notebook run again (up to `attempts`
    times in all) before it counts as a failure.
    """
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError

    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["CISM_PROFILE"] = profile
    os.environ["CISM_HEADLESS"] = "1"  # notebooks draw once instead of building widgets
    t0 = time.perf_counter()
    for attempt in range(1, attempts + 1):
        try:
            pm.execute_notebook(str(path), str(out_dir / path.name), kernel_name="python3",
                                cwd=str(path.parent), progress_bar=False, log_output=False,
                                execution_timeout=cell_timeout)
            break
        except pm.PapermillExecutionError as exc:
            raise SystemExit(f"FAILED {path} (cell {exc.exec_count}): {exc.ename}: {exc.evalue}\n"
                             f"executed copy with the traceback: {out_dir / path.name}") from None
        except CellTimeoutError:
            if attempt == attempts:
                raise SystemExit(f"FAILED {path}: a cell ran past {cell_timeout} s in each of "
                                 f"{attempts} attempts (raise --cell-timeout?)") from None
            print(f"[{profile}] {path.name}: a cell ran past {cell_timeout} s; running it again",
                  flush=True)
    return time.perf_counter() - t0


def _duration(seconds: float | None) -> str:
    """A run time as the report shows it: seconds under a minute, else minutes."""
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


# What each profile's notebooks run on (the report's header line).
PROFILE_DATA = {
    "smoke": "SynthAerial (synthetic aerial scenes generated on first use), the CI-sized plan",
    "cpu": "SynthAerial (synthetic aerial scenes generated on first use), the CPU plan of the committed results/",
    "paper": "real iSAID tiles (CISM_ISAID_ROOT), the paper's setup",
    "isaid512": "real iSAID tiles (CISM_ISAID_ROOT) on a CPU",
}
STYLE = ("body{font-family:sans-serif;max-width:56em;margin:2em auto;line-height:1.4}"
         "table{border-collapse:collapse;width:100%}td,th{padding:.2em .6em;text-align:left}"
         "tr.what td{color:#555;padding-bottom:.7em;border-bottom:1px solid #ddd}")


def _title(nb) -> str:
    """What a notebook shows: the first heading of its first Markdown cell."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def _machine() -> str:
    """The processor, its core count and the GPU, if any, of the machine writing the report."""
    from cism_lib.runtime import cpu_model

    line = f"{cpu_model()}, {os.cpu_count()} cores"
    try:  # torch is heavy; only the GPU's name needs it
        import torch

        if torch.cuda.is_available():
            line += f"; GPU: {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return line


def _header(profile: str) -> str:
    """The report's opening lines: the profile, its data and the machine."""
    from cism_lib.runtime import git_commit

    data = PROFILE_DATA.get(profile, "—")
    real = os.environ.get("CISM_ISAID_ROOT")
    if real and profile in ("smoke", "cpu"):
        data += f"; notebooks 01 and 09 add the real iSAID tiles of {real}"
    commit = (git_commit() or "—")[:10]
    return (f"<p>Profile <b>{html.escape(profile)}</b> · data: {html.escape(data)}<br>\n"
            f"Machine: {html.escape(_machine())} · commit {html.escape(commit)}</p>\n"
            "<p>Each notebook below was executed headlessly by <code>make reproduce</code>; its link opens "
            "the executed copy with every table and figure. Tables also go to <code>results/</code>, "
            "figures to <code>figures/</code>.</p>\n")


def write_report(out_dir: Path) -> Path:
    """Convert each executed notebook of `out_dir` to HTML beside it and write an `index.html`
    linking them: one line per notebook with its run time and status, and under it what it shows;
    above them the profile, its data and the machine.

    Run times and failures are read from the metadata papermill writes into each executed copy, so
    the index also lists notebooks executed by an earlier `--only` run.
    """
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    rows = []
    for path in notebooks(out_dir):
        nb = nbformat.read(path, as_version=4)
        body, _ = exporter.from_notebook_node(nb)
        path.with_suffix(".html").write_text(body, encoding="utf-8")
        run = nb.metadata.get("papermill", {})
        status = "failed" if run.get("exception") else "ok"
        when = html.escape(str(run.get("end_time") or "—")[:19].replace("T", " "))
        rows.append(f'<tr><td><a href="{html.escape(path.stem)}.html">{html.escape(path.stem)}</a></td>'
                    f"<td>{_duration(run.get('duration'))}</td><td>{status}</td><td>{when}</td></tr>")
        rows.append(f'<tr class="what"><td colspan="4">{html.escape(_title(nb))}</td></tr>')
    profile = out_dir.name
    title = f"cism_lib: executed notebooks ({html.escape(profile)} profile)"
    index = out_dir / "index.html"
    index.write_text(f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
                     f"<style>{STYLE}</style></head>\n<body><h1>{title}</h1>\n{_header(profile)}<table>\n"
                     "<tr><th>notebook</th><th>run time</th><th>status</th><th>finished</th></tr>\n"
                     + "\n".join(rows) + "\n</table>\n</body></html>\n", encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    """Run the notebooks for a profile and report the time each took."""
    ap = argparse.ArgumentParser(prog="python -m cism_lib.tools.reproduce", description=__doc__)
    ap.add_argument("--profile", default=os.environ.get("CISM_PROFILE", "cpu"), choices=PROFILES,
                    help="smoke: CI-sized; cpu: the default (about an hour on 2 cores); paper: GPU; "
                         "isaid512: the real tiles of CISM_ISAID_ROOT on a CPU")
    ap.add_argument("--notebooks", default="notebooks", type=Path, help="folder of notebooks")
    ap.add_argument("--out", default="build", type=Path, help="where executed copies go")
    ap.add_argument("--only", default=None, help="run only notebooks whose name contains this")
    ap.add_argument("--cell-timeout", default=None, type=float,
                    help="seconds per cell before a notebook is run again (default by profile: "
                         + ", ".join(f"{k} {v}" for k, v in CELL_TIMEOUT.items()) + ")")
    ap.add_argument("--jobs", default=None, type=int,
                    help="train the profile's runs in this many processes before the notebooks "
                         "(default: cores ÷ the profile's threads, so 2 for the cpu profile on 2 cores; "
                         "1: the notebooks train their runs one after another)")
    args = ap.parse_args(argv)
    from cism_lib.runtime import stop_on_signals

    stop_on_signals()
    try:
        return _reproduce(args)
    except KeyboardInterrupt:  # the pools have stopped their workers; finished runs stay
        print(f"make reproduce PROFILE={args.profile}: interrupted; finished runs and notebooks are kept, "
              "run it again to go on", file=sys.stderr)
        return 130


def _reproduce(args: argparse.Namespace) -> int:
    """The body of main: the profile's runs, then its notebooks, then the report."""
    timeout = args.cell_timeout if args.cell_timeout is not None else CELL_TIMEOUT[args.profile]
    books = notebooks(args.notebooks, args.only)
    if not books:
        print(f"no notebooks found in {args.notebooks}", file=sys.stderr)
        return 1
    if args.profile in ("paper", "isaid512"):  # real tiles: a wrong folder fails here, in one line
        from cism_lib.errors import CismError
        from cism_lib.experiments import check_profile_data

        try:
            check_profile_data(args.profile)
        except CismError as exc:
            print(f"make reproduce PROFILE={args.profile}: {exc}", file=sys.stderr)
            return 2
    out_dir = (args.out / args.profile).resolve()
    total = 0.0
    if args.only is None:
        from cism_lib.errors import CismError
        from cism_lib.experiments import default_workers, prepare_runs

        jobs = args.jobs if args.jobs is not None else default_workers(args.profile)
        if jobs > 1:
            t0 = time.perf_counter()
            try:
                prepare_runs(args.profile, jobs, log=lambda line: print(line, flush=True))
            except CismError as exc:
                print(f"make reproduce PROFILE={args.profile}: {exc}", file=sys.stderr)
                return 1
            total += time.perf_counter() - t0
            print(f"[{args.profile}] runs ready in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    try:
        for nb in books:
            print(f"[{args.profile}] {nb.name} ...", flush=True)
            seconds = run_notebook(nb.resolve(), out_dir, args.profile, timeout)
            total += seconds
            print(f"[{args.profile}] {nb.name} done in {seconds / 60:.1f} min", flush=True)
    finally:  # a failed notebook's executed copy, traceback included, is in the report too
        if out_dir.is_dir():
            print(f"[{args.profile}] report: {write_report(out_dir)}", flush=True)
    print(f"[{args.profile}] all {len(books)} notebooks in {total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
