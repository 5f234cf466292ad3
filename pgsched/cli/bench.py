"""``pgsched bench``: throughput and latency of this pgsched on this database."""

from __future__ import annotations

import click

from pgsched.cli.common import cli, database_of, echo_json, json_option


@cli.command("bench")
@click.option("--jobs", type=click.IntRange(min=10), default=10_000, show_default=True,
              help="Jobs per measurement (single enqueue uses at most 5,000).")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True,
              help="Concurrency of the draining worker.")
@click.option("--latency-samples", type=click.IntRange(min=5), default=200, show_default=True,
              help="Enqueue-to-start samples taken with an idle worker.")
@click.option("--idle-seconds", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="How long to count the statements of an idle worker.")
@click.option("--producers", type=click.IntRange(min=0), default=0, show_default=True,
              metavar="N", help="Also enqueue from 1 and from N separate producer processes "
                                "(one job per transaction), beside `pgbench -c 1` and `-c N`.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              metavar="N", help="Also drain --jobs no-op jobs by 1, 2, 4 ... N separate "
                                "`pgsched worker` processes of --concurrency each.")
@click.option("--compare", type=click.Choice(["pgqueuer"]), default=None,
              help="The same scaling measurements on pgqueuer's async API (needs "
                   "`pip install 'pgsched[bench]'`), interleaved round by round.")
@click.option("--rounds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Rounds of the scaling measurements; the table shows median and range.")
@click.option("--soak", type=click.IntRange(min=1), default=None, metavar="N",
              help="Instead: push N jobs through enqueue and drain with pruning on, and "
                   "report drain rate and claim p99 per slice, and table sizes at the end.")
@click.option("--slice", "slice_size", type=click.IntRange(min=1), default=100_000,
              show_default=True, help="Jobs per reported slice of a soak.")
@json_option
@click.pass_context
def bench_command(ctx: click.Context, jobs: int, concurrency: int, latency_samples: int,
                  idle_seconds: float, producers: int, workers: int, compare: str | None,
                  rounds: int, soak: int | None, slice_size: int, as_json: bool) -> None:
    """Measure enqueue, drain, latency and idle load in a throwaway schema (dropped after).

    Commits stay as durable as the server is configured (fsync and synchronous_commit are
    printed); the draining worker is a real `pgsched worker` subprocess. Each rate is also
    given against this machine's own ceiling (a bare one-row INSERT per transaction), with the
    reference machine's targets scaled to it.
    """
    from pgsched.bench import REFERENCE_CEILING, Bench, BenchConfig

    url = database_of(ctx).url
    if soak is not None:
        _soak(url, soak, slice_size, concurrency, as_json)
        return
    config = BenchConfig(jobs, concurrency, latency_samples, idle_seconds, producers=producers,
                         workers=workers, compare=compare, rounds=rounds)
    result = Bench(url, config).run()
    if as_json:
        echo_json(result)
        return
    server = result["server"]
    latency = result["latency_ms"]
    cpu = result["latency_beside_cpu_ms"]
    ceiling = result["ceiling"]

    def rate(key: str, unit: str = "jobs/s") -> str:
        return (f"{result[key]:,.0f} {unit}  ({result['versus_ceiling'][key]:.2f}x ceiling; "
                f"target {result['scaled_targets'][key]:,.0f} here)")

    rows = [
        ("server", f"PostgreSQL {server['server_version']}, fsync={server['fsync']}, "
                   f"synchronous_commit={server['synchronous_commit']}"),
        (f"ceiling: 1-row INSERT per txn ({ceiling['tool']})",
         f"{ceiling['per_s']:,.0f} /s  (psycopg {ceiling['psycopg_per_s']:,.0f} /s; "
         f"reference machine {REFERENCE_CEILING:,.0f} /s)"),
        ("single enqueue (1 txn each)", rate("single_enqueue_per_s")),
        ("batch enqueue (enqueue_many)", rate("batch_enqueue_per_s")),
        (f"drain {jobs:,} no-op jobs, concurrency {concurrency}", rate("drain_per_s")),
        ("enqueue-to-start p50 / p95 / p99",
         f"{latency['p50']:.2f} / {latency['p95']:.2f} / {latency['p99']:.2f} ms"),
        ("  same, while draining another queue",
         f"{result['latency_under_load_ms']['p50']:.2f} / - / "
         f"{result['latency_under_load_ms']['p99']:.2f} ms "
         f"({result['latency_under_load_ms']['samples']} samples)"),
        *[(f"  same, beside {concurrency} CPU-bound jobs ({result['cpu_job_ms']:.0f} ms) on "
           f"{where}", f"{cpu[placement]['p50']:.2f} / - / {cpu[placement]['p99']:.2f} ms")
          for placement, where in (("same_worker", "its worker"),
                                   ("own_worker", "another worker"))],
        ("idle worker statements", f"{result['idle_statements_per_s']:.2f} /s"),
        ("statements per drained job", f"{result['statements_per_job']:.2f}"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        click.echo(f"{label:<{width}}  {value}")
    if "scaling" in result:
        _scaling_table(result["scaling"])


def _scaling_table(scaling: dict) -> None:
    """Median and range over the rounds, per system, with the ceilings beside."""
    summary = scaling["summary"]
    systems = [name for name in ("pgsched", "pgqueuer") if name in summary]
    n = scaling["producers"]

    def cell(system: str, key: str, unit: str = "/s") -> str:
        got = summary.get(system, {}).get(key)
        if got is None:
            return "-"
        digits = ".2f" if unit == " ms" else ",.0f"
        if got["min"] == got["max"]:
            return f"{got['median']:{digits}}{unit}"
        return (f"{got['median']:{digits}}{unit} ({got['min']:{digits}}-"
                f"{got['max']:{digits}})")

    rows: list[tuple[str, str]] = []
    if n:
        rows.append(("1 producer process", "producers_1_per_s"))
        rows.append((f"{n} producer processes", f"producers_{n}_per_s"))
    rows += [(f"drain, {size} worker process(es)", f"drain_{size}_workers_per_s")
             for size in scaling["workers"]]
    most = scaling["workers"][-1] if scaling["workers"] else 0
    if most > 1:
        limit = scaling["rounds"][0]["pgsched"].get("limited_concurrency")
        rows += [(f"drain, {most} workers, concurrency={limit} queue",
                  f"drain_{most}_workers_limited_per_s"),
                 ("  most runs RUNNING in one snapshot", "limited_max_running")]
    if scaling["compare"]:
        rows += [("single enqueue, in-process", "single_enqueue_per_s"),
                 ("enqueue-to-start p50", "start_p50_ms"),
                 ("enqueue-to-start p99", "start_p99_ms")]
    click.echo(f"\nscaling: {len(scaling['rounds'])} round(s), median (min-max); "
               f"{scaling['producer_jobs']:,} jobs per producer")
    header = ["", *systems,
              "ceiling: pgbench, bare 1-row INSERT; pgsched's own INSERT, prepared"]
    lines = [header]
    for label, key in rows:
        unit = " ms" if key.endswith("_ms") else "" if key.endswith("_running") else "/s"
        ceiling = ""
        if key in ("producers_1_per_s", f"producers_{n}_per_s"):
            c = 1 if key == "producers_1_per_s" else n
            ceiling = (f"-c {c}: {cell('ceiling', f'pgbench_c{c}')}; pgsched's INSERT: "
                       f"{cell('ceiling', f'pgbench_enqueue_c{c}')}")
        lines.append([label, *[cell(s, key, unit) for s in systems], ceiling])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        click.echo("  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)))


def _soak(url: str, jobs: int, slice_size: int, concurrency: int, as_json: bool) -> None:
    from pgsched.bench import BenchConfig
    from pgsched.soak import Soak

    result = Soak(url, BenchConfig(concurrency=concurrency), jobs, slice_size).run()
    if as_json:
        echo_json(result)
        return
    server = result["server"]
    click.echo(f"PostgreSQL {server['server_version']}, fsync={server['fsync']}, "
               f"synchronous_commit={server['synchronous_commit']}; {jobs:,} jobs, "
               f"concurrency {concurrency}, pruning runs finished over "
               f"{result['retention_s']:g} s ago ({result['pruned']:,} pruned)")
    vacuum = result["autovacuum"]
    click.echo(f"autovacuum={vacuum['autovacuum']}, naptime={vacuum['naptime']}, "
               f"vacuum_scale_factor={vacuum['vacuum_scale_factor']} (server settings; "
               f"table settings in migration 0005 apply on top)")
    click.echo(f"{'jobs':>21}  {'drain/s':>9}  {'enqueue/s':>9}  {'claim p99':>10}  "
               f"{'claim mean':>10}  {'dead tuples':>11}  {'table MB':>8}  {'index MB':>8}")
    for part in result["slices"]:
        p99 = part["claim_p99_ms"]
        mean = part["claim_mean_ms"]
        click.echo(f"{part['from']:>10,}-{part['to']:<10,}  {part['drain_per_s']:>9,.0f}  "
                   f"{part['enqueue_per_s']:>9,.0f}  "
                   f"{'-' if p99 is None else f'{p99:.2f} ms':>10}  "
                   f"{'-' if mean is None else f'{mean:.2f} ms':>10}  "
                   f"{part['dead_tuples']:>11,}  {part['table_bytes'] / 2**20:>8.1f}  "
                   f"{part['index_bytes'] / 2**20:>8.1f}")
    if result["last_vs_first"] is not None:
        click.echo(f"last slice drains at {result['last_vs_first']:.0%} of the first's rate")
    click.echo(f"{'table':<12} {'live':>10} {'dead':>10} {'autovacuums':>11} "
               f"{'table size':>11} {'index size':>11}")
    for name, row in result["tables"].items():
        click.echo(f"{name:<12} {row['live_tuples']:>10,} {row['dead_tuples']:>10,} "
                   f"{row['autovacuums']:>11,} {row['table_bytes'] / 2**20:>8.1f} MB "
                   f"{row['index_bytes'] / 2**20:>8.1f} MB")
