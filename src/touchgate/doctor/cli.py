"""``touchgate doctor``: the conformance suite from the command line, against a
URL or a registered touchpoint, as a Rich report or JSON.

Exit codes: 0 every required check passed (with ``--strict``: and no warning),
1 a required check failed, 2 the command line is wrong.

The network guard applies here as in the service: a loopback or private URL is
refused unless ``TOUCHGATE_ALLOWED_NETWORKS`` or ``--allow-network CIDR`` allows
it. The flag only widens this one run, on the operator's own machine; the API
never takes it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets as random_secrets
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.orm import sessionmaker

from ..config import Settings, get_settings
from ..crypto import SecretBox
from ..db import make_engine
from ..delivery import client as http_client
from ..errors import TouchgateError
from ..receiver import Verifier
from ..runtime import Runtime
from . import service
from .schemas import Report
from .suite import Limits, OptionsApi, Target, run_suite

MARKS = {
    "pass": ("✓", "green"),
    "warn": ("!", "yellow"),
    "fail": ("✗", "red"),
    "skip": ("–", "dim"),
}


def _settings(allow_network: list[str]) -> Settings:
    base = get_settings()
    for cidr in allow_network:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise typer.BadParameter(
                f"{cidr!r} is not a network (e.g. 127.0.0.1/32)", param_hint="--allow-network"
            ) from None
    if not allow_network:
        return base
    joined = ",".join(p for p in [base.allowed_networks, *allow_network] if p)
    return base.model_copy(update={"allowed_networks": joined})


def _offline_runtime(settings: Settings) -> Runtime:
    """What the HTTP client needs when no database is involved (a URL given): the
    settings, with an unused in-memory engine and a throwaway key, so checking a
    URL never creates a database or a secret-key file in the working directory."""
    engine = make_engine("sqlite://")
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=sessionmaker(engine),
        secrets=SecretBox(random_secrets.token_urlsafe(32)),
    )


def _options_api(raw: str) -> OptionsApi:
    key, sep, url = raw.partition("=")
    if not sep or "://" in key:
        key, url = "options", raw
    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter(
            f"{raw!r}: give an http(s) URL, or KEY=URL to name the parameter",
            param_hint="--options-url",
        )
    return OptionsApi(key=key, name=key, url=url)


def doctor(
    url: Annotated[
        str | None,
        typer.Argument(help="The endpoint's request URL (or use --project/--touchpoint)."),
    ] = None,
    token: Annotated[str | None, typer.Option(help="The auth token (signs the MD5 sign).")] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(help="The signing secret whsec_… (Standard Webhooks); repeatable."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=500, help="The batch size.")] = 500,
    timeout: Annotated[
        float, typer.Option(min=1, max=60, help="Seconds to wait for an answer.")
    ] = 15.0,
    receipt_url: Annotated[
        str | None, typer.Option(help="The receipt URL (async receipt mode).")
    ] = None,
    options_url: Annotated[
        list[str] | None, typer.Option(help="An options API URL, or KEY=URL; repeatable.")
    ] = None,
    project: Annotated[int | None, typer.Option("--project", "-p", help="Project id.")] = None,
    touchpoint: Annotated[
        int | None, typer.Option("--touchpoint", "-t", help="Touchpoint id.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    strict: Annotated[bool, typer.Option(help="Exit 1 on warnings too.")] = False,
    samples: Annotated[
        int, typer.Option(min=1, max=20, help="Requests per batch size for latency.")
    ] = 3,
    max_in_flight_probe: Annotated[
        int, typer.Option(min=1, max=16, help="Most requests at once in the concurrency probe.")
    ] = 8,
    receipt_timeout: Annotated[
        float, typer.Option(min=1, max=3600, help="Seconds to poll receipts.")
    ] = 60.0,
    receipt_poll: Annotated[
        float, typer.Option(min=0.1, max=300, help="Seconds between receipt polls.")
    ] = 2.0,
    allow_network: Annotated[
        list[str] | None,
        typer.Option(help="Let this run reach a private/loopback network (CIDR); repeatable."),
    ] = None,
) -> None:
    """Check a touchpoint endpoint before it goes live: protocol, idempotency,
    signatures, timing, receipts and the options API, with synthetic users."""
    if (url is None) == (project is None or touchpoint is None):
        raise typer.BadParameter(
            "give either a URL or both --project and --touchpoint", param_hint="URL"
        )
    settings = _settings(allow_network or [])
    limits = Limits(
        samples=samples,
        max_probe=max_in_flight_probe,
        receipt_poll_seconds=receipt_poll,
        receipt_timeout_seconds=receipt_timeout,
    )
    if url is not None:
        if not url.startswith(("http://", "https://")):
            raise typer.BadParameter("an http:// or https:// URL", param_hint="URL")
        try:
            Verifier(secrets=tuple(secret or ()))  # checks each secret's form
        except ValueError:
            raise typer.BadParameter(
                "a signing secret is whsec_ followed by base64", param_hint="--secret"
            ) from None
        runtime = _offline_runtime(settings)
        target = Target(
            url=url,
            token=token,
            secrets=tuple(secret or ()),
            batch_size=batch_size,
            timeout=timeout,
            receipt_mode="async" if receipt_url else "sync",
            receipt_url=receipt_url,
            options_apis=tuple(_options_api(u) for u in options_url or []),
        )
    else:
        assert project is not None and touchpoint is not None
        runtime = Runtime.from_settings(settings)
        try:
            with runtime.tx() as session:
                target = service.prepare(session, runtime, project, touchpoint)
        except TouchgateError as exc:
            Console(stderr=True).print(f"[red]{exc.message}")
            raise typer.Exit(2) from None

    async def check() -> Report:
        try:
            return await run_suite(target, service.sender(runtime), limits)
        finally:
            await http_client.close(runtime)

    try:
        report = asyncio.run(check())
    finally:
        runtime.close()
    if json_out:
        typer.echo(report.model_dump_json(indent=2))
    else:
        render(report, Console(soft_wrap=False))
    failed = not report.ok or (strict and report.counts.warnings > 0)
    raise typer.Exit(1 if failed else 0)


def render(report: Report, console: Console) -> None:
    """The report as Rich tables: every finding with its fix, then the timing."""
    console.print(
        Text.assemble(
            ("touchgate doctor ", "bold"),
            report.url,
            f"  (batch size {report.batch_size}, timeout {report.timeout_seconds:g} s, "
            f"{report.receipt_mode} receipts)",
        )
    )
    table = Table(show_lines=False, expand=True)
    table.add_column("", width=1)
    table.add_column("check", no_wrap=True)
    table.add_column("result", ratio=3)
    table.add_column("how to fix", ratio=3, style="dim")
    for item in report.items:
        mark, colour = MARKS[item.outcome]
        label = item.check + (" (advice)" if item.outcome == "warn" else "")
        table.add_row(Text(mark, style=colour), label, item.message, item.fix or "")
    console.print(table)
    if report.timing:
        timing = Table(title="latency per batch", expand=False)
        for column in ("batch", "requests", "p50 ms", "p95 ms", "timeouts", "timeout ms"):
            timing.add_column(column, justify="right")
        for row in report.timing:
            timing.add_row(
                *(
                    str(v)
                    for v in (
                        row.batch_size,
                        row.samples,
                        row.p50_ms,
                        row.p95_ms,
                        row.timeouts,
                        row.timeout_ms,
                    )
                )
            )
        console.print(timing)
    if report.suggested_in_flight is not None:
        console.print(f"suggested in-flight limit (max_in_flight): {report.suggested_in_flight}")
    c = report.counts
    verdict = ("[green]PASSED" if report.ok else "[red]FAILED") + "[/]"
    console.print(
        f"{verdict}: {c.passed} passed, {c.warnings} warnings, {c.failed} failed, "
        f"{c.skipped} skipped in {report.duration_ms / 1000:.1f} s. Synthetic users: gids "
        f"{report.synthetic.gid_min}–{report.synthetic.gid_max}, "
        f"temData[{report.synthetic.marker!r}] = 'synthetic'."
    )
