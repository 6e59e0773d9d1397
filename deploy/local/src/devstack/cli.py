"""`devstack up|down|status|env|install`: the local stack for developers, without Docker;
`devstack render`: the deployment files that follow from deploy/roles.yaml."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import psutil
import typer
from rich.console import Console

from devstack import install, monitoring
from devstack import platform as platform_mod
from devstack import stack as stack_mod
from devstack.process import StartupError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Run the platform locally as plain processes: Apache Kafka (KRaft), MinIO, PostgreSQL, "
    "a mail sink, an SMS sink, a trace viewer, the five services and the patient's web app.",
)
console = Console()

RootOpt = Annotated[
    str | None,
    typer.Option(
        "--root", help="State and data directory (default: $DEVSTACK_ROOT or ./.devstack)"
    ),
]


@app.command("install")
def install_parts() -> None:
    """Download or build every part into the user cache, without starting anything (also the
    trace viewer and the Compose CLI that the deployment tests use, and Debian's Chromium for
    the browser tests)."""
    kafka, minio, pg, tesseract = install.ensure_all(console)
    zipkin = platform_mod.ensure_zipkin(console)
    prometheus = monitoring.ensure_prometheus(console)
    compose = install.ensure_compose(console)
    chromium = install.ensure_chromium(console)
    node_tools = {name: install.ensure_node_tool(console, name) for name in install.NODE_TOOLS}
    console.print(
        f"kafka: {kafka}\nminio: {minio}\npostgres: {pg}\ntesseract: {tesseract}\n"
        f"zipkin: {zipkin}\nprometheus and alertmanager (Debian's packages): {prometheus.home}\n"
        f"docker compose (for checking docker-compose.yml): {compose}\n"
        f"chromium (Debian's, for the browser tests): {chromium}"
    )
    uses = {
        "asyncapi": "for the contract tests",
        "spectral": "the OpenAPI linter, for the contract tests",
        "web": "htmx, for the patient's web app",
    }
    for name, home in node_tools.items():
        console.print(f"npm tools {name} ({uses.get(name, 'pinned')}): {home}")


@app.command()
def up(
    root: RootOpt = None,
    services: Annotated[
        bool,
        typer.Option(
            help="start the five services and the patient's web app "
            "(--no-services: only the infrastructure)"
        ),
    ] = True,
    process_per_role: Annotated[
        bool,
        typer.Option(
            help="run every role of a service (API, consumer, relay...) as its own process, "
            "as Compose and Kubernetes do; by default each service is one process"
        ),
    ] = False,
) -> None:
    """Start the platform (installing parts on first use) and print where everything is."""
    where = stack_mod.resolve_root(root)
    current = stack_mod.StackInfo.load(where)
    running = platform_mod.PlatformInfo.load(where)
    if (
        current
        and all(current.alive().values())
        and (not services or (running and running.web and all(running.alive().values())))
    ):
        console.print("[yellow]the platform is already running[/]")
        _print(current, running)
        _print_web(running, current)
        return
    if running:  # a process died (or the web app is missing): restart them all on the same data
        platform_mod.stop(running)
        (where / platform_mod.STATE_FILE).unlink(missing_ok=True)
        running = None
    try:
        if not (current and all(current.alive().values())):
            if current:  # a part died: stop the rest, start afresh on the same data
                stack_mod.stop(current)
            current = stack_mod.start(where, console, prefer_dev_ports=True)
        if services:
            running = platform_mod.start(
                current,
                console,
                prefer_dev_ports=True,
                processes="role" if process_per_role else "service",
            )
    except (StartupError, install.InstallError) as exc:
        console.print(f"[red]✗ {exc}[/]")
        raise typer.Exit(1) from exc
    env_file = where / "env"
    # Quoted: the outbound allow-list is a JSON list, which a shell would strip of its quotes.
    env_file.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in current.env().items()))
    env_file.chmod(0o600)
    _print(current, running)
    if running:
        console.print(
            f"\nenvironment of the services: [bold]{where / 'platform.env'}[/]; "
            f"sample keys: [bold]{running.keys_file}[/]"
        )
        _print_web(running, current)
        if running.prometheus:
            console.print(
                f"Metrics: Prometheus [bold]{running.prometheus}/graph[/] (alerts "
                f"{running.prometheus}/alerts, e-mailed by Alertmanager {running.alertmanager} "
                f"to {monitoring.OPS_EMAIL} in the mail sink).",
                highlight=False,
            )
        console.print("Next: [bold]make demo[/] walks one case through the whole journey.")
    else:
        console.print(f"\nenvironment for the services: [bold]source {env_file}[/]")


@app.command()
def down(
    root: RootOpt = None,
    purge: Annotated[bool, typer.Option(help="also delete the stack's data")] = False,
) -> None:
    """Stop every part of the stack; with --purge, delete its data as well."""
    where = stack_mod.resolve_root(root)
    info = stack_mod.StackInfo.load(where)
    if info is None:
        console.print("no stack state here: nothing to stop")
    else:
        running = platform_mod.PlatformInfo.load(where)
        if running:
            platform_mod.stop(running)
            (where / platform_mod.STATE_FILE).unlink(missing_ok=True)
        stack_mod.stop(info)
        (where / stack_mod.STATE_FILE).unlink(missing_ok=True)
        console.print("[green]✓[/] stopped")
    if purge:
        stack_mod.purge(where)
        console.print(f"[green]✓[/] deleted {where}")


@app.command()
def status(root: RootOpt = None) -> None:
    """Show each part's state, address, memory and log; exit 1 if any part is down."""
    where = stack_mod.resolve_root(root)
    info = stack_mod.StackInfo.load(where)
    if info is None:
        console.print("the stack is not running (no state file)")
        raise typer.Exit(1)
    running = platform_mod.PlatformInfo.load(where)
    # A process counts as up only when it answers its health probe, not merely when its pid
    # lives (a trace viewer out of heap kept its pid while failing every request).
    health = running.health() if running else {}
    _print(info, running, health)
    if not all(info.alive().values()) or any(state != "up" for state in health.values()):
        raise typer.Exit(1)


@app.command()
def demo(
    root: RootOpt = None,
    information: Annotated[
        bool,
        typer.Option(
            "--information",
            help="the longer journey: the center asks for more (a HER2 re-review, the slides, "
            "the family history) before it gives its opinion (devstack.information_demo)",
        ),
    ] = False,
) -> None:
    """Walk one case through the whole journey on the running platform (see devstack.demo)."""
    import asyncio

    from devstack.demo import run_journey, show
    from devstack.information_demo import run_information_journey, show_information

    where = stack_mod.resolve_root(root)
    info = stack_mod.StackInfo.load(where)
    running = platform_mod.PlatformInfo.load(where)
    if info is None or running is None or not all(running.alive().values()):
        console.print("[red]✗ the platform is not running: start it with `make up`[/]")
        raise typer.Exit(1)
    try:
        if information:
            longer = asyncio.run(run_information_journey(info, running, console=console))
            show_information(longer, console)
            return
        journey = asyncio.run(run_journey(info, running, console=console))
    except (TimeoutError, RuntimeError) as exc:
        console.print(f"[red]✗ {exc}[/]\nservice logs: {where}/services/")
        raise typer.Exit(1) from exc
    show(journey, console)


@app.command()
def timeline(
    case_id: Annotated[str, typer.Argument(help="the case id")],
    root: RootOpt = None,
    everything: Annotated[
        bool, typer.Option("--all", help="also the database and object-storage calls")
    ] = False,
    lookback_days: Annotated[float, typer.Option(help="how far back to look")] = 7.0,
    viewer: Annotated[
        str | None, typer.Option(help="the trace viewer's base URL (default: the platform's)")
    ] = None,
) -> None:
    """One case's journey across the services, in time order, from the trace viewer: every span
    tagged with the case id (service, span, event type, status, trace)."""
    import httpx

    from devstack import timeline as timeline_mod

    if viewer is None:
        running = platform_mod.PlatformInfo.load(stack_mod.resolve_root(root))
        viewer = running.trace_viewer if running is not None else ""
    if not viewer:
        console.print("[red]✗ no trace viewer: start the platform (`make up`) or give --viewer[/]")
        raise typer.Exit(1)
    try:
        traces = timeline_mod.case_traces(viewer, case_id, lookback_days=lookback_days)
    except httpx.HTTPError as exc:
        console.print(f"[red]✗ the trace viewer at {viewer} did not answer: {exc}[/]")
        raise typer.Exit(1) from exc
    timeline_mod.show(viewer, case_id, traces, console, everything=everything)
    if not traces:
        raise typer.Exit(1)


@app.command()
def env(root: RootOpt = None) -> None:
    """Print `export` lines for the running stack (use: eval "$(devstack env)")."""
    info = stack_mod.StackInfo.load(stack_mod.resolve_root(root))
    if info is None:
        print("devstack: the stack is not running", file=sys.stderr)
        raise typer.Exit(1)
    for key, value in info.env().items():
        print(f"export {key}={shlex.quote(value)}")


@app.command()
def render(
    check: Annotated[
        bool, typer.Option(help="write nothing; exit 1 if a generated file is out of date")
    ] = False,
    build_args: Annotated[
        str | None,
        typer.Option(
            "--build-args", metavar="SERVICE", help="print the Dockerfile's arguments of one image"
        ),
    ] = None,
) -> None:
    """Write docker-compose.yml's process entries and deploy/k8s/base's per-service files from
    deploy/roles.yaml (the one list of services and their roles)."""
    from devstack import render as render_mod
    from devstack import roles

    if build_args is not None:
        manifest = roles.load()
        if build_args not in manifest.services:
            console.print(f"[red]✗ no service {build_args!r} in {roles.manifest_path()}[/]")
            raise typer.Exit(2)
        for key, value in render_mod.build_args(manifest, build_args).items():
            print(f"--build-arg {key}={shlex.quote(value)}")
        return
    root = roles.repository_root()
    if check:
        stale = render_mod.drift(root)
        for path in stale:
            console.print(f"[red]✗[/] {path.relative_to(root)} differs from `devstack render`")
        if stale:
            raise typer.Exit(1)
        console.print("[green]✓[/] the generated files match deploy/roles.yaml")
        return
    changed = render_mod.write(root)
    for path in changed:
        console.print(f"[green]✓[/] wrote {path.relative_to(root)}")
    if not changed:
        console.print("nothing to write: the generated files match deploy/roles.yaml")


def _print_web(
    running: platform_mod.PlatformInfo | None, stack: stack_mod.StackInfo | None
) -> None:
    if running is None or not running.web:
        return
    console.print(f"Open [bold]{running.web}/[/] for the patient's pages.", highlight=False)
    if stack is not None and stack.sms_dir:
        console.print(
            f"Texts (a patient's sign-in code by SMS, updates to a phone-only case) land in the "
            f"SMS sink: [bold]{stack.sms_dir}[/]; read them with "
            f"[bold]uv run devstack sms --to +380…[/].",
            highlight=False,
        )
    staff = running.staff
    if staff:
        sink = f"the mail sink (SMTP {stack.smtp}, messages in {stack.mail_dir})" if stack else ""
        console.print(
            f"The center console: [bold]{running.web}/center[/], sign in as "
            f"[bold]{staff['email']}[/] ({staff['name']}, {staff['center']}); the sign-in code "
            f"arrives in {sink or 'the mail sink'}; read it with "
            f"[bold]uv run devstack mail --to {staff['email']}[/].",
            highlight=False,
        )
    operator = running.operator
    if operator:
        console.print(
            f"The ops screen: [bold]{running.web}/ops[/] (find a case, its timeline across the "
            f"services, cases past a deadline, dead letters), sign in as "
            f"[bold]{operator['email']}[/] ({operator['name']}); read the code with "
            f"[bold]uv run devstack mail --to {operator['email']}[/].",
            highlight=False,
        )


@app.command()
def mail(
    root: RootOpt = None,
    to: Annotated[str | None, typer.Option(help="only messages to this address")] = None,
    last: Annotated[int, typer.Option(help="how many messages to list")] = 10,
) -> None:
    """The mail sink's newest messages (a one-time sign-in code, what a patient was told); with
    --to, the newest message to that address in full."""
    from devstack.mailsink import list_messages

    info = stack_mod.StackInfo.load(stack_mod.resolve_root(root))
    if info is None or not info.mail_dir:
        console.print("[red]✗ the stack is not running: start it with `make up`[/]")
        raise typer.Exit(1)
    found = [
        m for m in list_messages(Path(info.mail_dir)) if to is None or to.casefold() in m.recipients
    ]
    if not found:
        console.print(f"no messages{f' to {to}' if to else ''} in {info.mail_dir}")
        raise typer.Exit(1)
    if to is not None:
        newest = found[-1]
        console.print(f"[bold]{newest.subject}[/]  ({newest.received_at:%Y-%m-%d %H:%M:%S} UTC)")
        console.print(newest.text() or "", highlight=False, markup=False)
        return
    for m in found[-last:]:
        console.print(
            f"{m.received_at:%Y-%m-%d %H:%M:%S}  {', '.join(m.recipients)}  {m.subject}",
            highlight=False,
            markup=False,
        )


@app.command()
def sms(
    root: RootOpt = None,
    to: Annotated[str | None, typer.Option(help="only texts to this number (E.164)")] = None,
    last: Annotated[int, typer.Option(help="how many texts to list")] = 10,
) -> None:
    """The SMS sink's newest texts (a patient's sign-in code, an update to a phone-only case);
    with --to, only those to that number."""
    from devstack.smssink import list_messages

    info = stack_mod.StackInfo.load(stack_mod.resolve_root(root))
    if info is None or not info.sms_dir:
        console.print("[red]✗ the stack is not running (or has no SMS sink): `make up`[/]")
        raise typer.Exit(1)
    wanted = to.replace(" ", "") if to else None
    found = [m for m in list_messages(Path(info.sms_dir)) if wanted is None or m.to == wanted]
    if not found:
        console.print(f"no texts{f' to {to}' if to else ''} in {info.sms_dir}")
        raise typer.Exit(1)
    for m in found[-last:]:
        console.print(
            f"{m.received_at:%Y-%m-%d %H:%M:%S}  {m.to}  {m.body}", highlight=False, markup=False
        )


def _rss_mib(pid: int, *, children: bool = True) -> float:
    """Memory of a process and its children, in MiB: their PSS (a page shared by n processes
    counts 1/n in each, so the figures add up to what the machine holds), else their RSS. The
    launcher's children are the service processes, each listed on its own."""
    try:
        root = psutil.Process(pid)
        procs = [root, *(root.children(recursive=True) if children else [])]
        total = 0
        for proc in procs:
            try:
                total += proc.memory_full_info().pss
            except (psutil.AccessDenied, AttributeError):
                total += proc.memory_info().rss
        return total / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def _print(
    info: stack_mod.StackInfo,
    running: platform_mod.PlatformInfo | None = None,
    health: dict[str, str] | None = None,
) -> None:
    """Each part and process; `health` (from `PlatformInfo.health`) replaces the processes'
    pid-only state with what their probes answer."""
    alive = info.alive()
    addresses = {
        "kafka": f"bootstrap {info.kafka_bootstrap}",
        "minio": f"S3 http://{info.s3_endpoint}  console http://{info.s3_console}",
        "postgres": f"postgresql://{info.postgres_dsn.rsplit('@', 1)[1]}",
        "sinks": f"mail: SMTP {info.smtp}  messages in {info.mail_dir}; SMS: "
        f"Twilio-compatible API {info.sms_url}  texts in {info.sms_dir}",
        "mailsink": f"SMTP {info.smtp}  messages in {info.mail_dir}",
        "smssink": f"Twilio-compatible API {info.sms_url}  texts in {info.sms_dir}",
    }
    total = 0.0
    for name, pid in info.pids.items():
        rss = _rss_mib(pid)
        total += rss
        state = "[green]up  [/]" if alive[name] else "[red]down[/]"
        where = addresses.get(name, "")
        console.print(f"{state} [bold]{name:<9}[/] {where}  ({rss:.0f} MiB)")
        console.print(f"     log: {info.logs[name]}", highlight=False)
    if running is not None:
        states = health or {n: "up" if a else "down" for n, a in running.alive().items()}
        for name, pid in running.pids.items():
            rss = _rss_mib(pid, children=name != platform_mod.LAUNCHER)
            total += rss
            label = states[name] if states[name] in {"up", "unhealthy"} else "down"
            state = f"[{'green' if label == 'up' else 'red'}]{label:<4}[/]"
            service = name.split("-", 1)[0]
            if name == "zipkin":
                where = f"traces {running.trace_viewer}/zipkin/"
            elif name == "prometheus":
                where = f"metrics, rules and alerts {running.prometheus}/graph"
            elif name == "alertmanager":
                where = f"alerts (e-mailed to the mail sink) {running.alertmanager}"
            elif name == platform_mod.WEB:
                where = (
                    f"{running.web}/  the patient's pages, the center console at /center, "
                    "the ops screen at /ops"
                )
            elif name.endswith("-api"):
                where = f"{running.apis[service]}  docs {running.apis[service]}/docs"
            elif name == platform_mod.LAUNCHER:
                where = "forked the service processes and the web app from shared libraries"
            else:
                where = f"metrics {running.metrics.get(name, '')}"
            console.print(f"{state} [bold]{name:<22}[/] {where}  ({rss:.0f} MiB)")
        console.print(f"     logs: {running.root}/services/<process>.log", highlight=False)
    console.print(
        f"total memory (PSS: shared pages counted once): {total:.0f} MiB; "
        f"credentials: {info.root}/stack.json"
    )


if __name__ == "__main__":
    app()
