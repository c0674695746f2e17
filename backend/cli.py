"""``tray-notifier-server``: run the server, publish a notification, administer.

Every subcommand reads the same settings (environment variables, see README),
so ``notify`` run next to a server writes to that server's database.

Problems a user can fix (a port in use, a wrong ``DATABASE_URL``, an unknown
user) end with one plain line on stderr and a non-zero exit code, never a
traceback; set ``TRAY_DEBUG=1`` to see the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import errno
import gc
import os
import signal
import socket
import ssl
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import asyncio

    from backend.demo import DemoSummary
    from backend.notifications.selectors import Audience

PROG = "tray-notifier-server"
# The first line ``serve`` prints on stdout; scripts and test fixtures parse it.
LISTENING_PREFIX = f"{PROG}: listening on "
WEBSOCKET_PATH = "/ws/notifications/"
# Exit code for a request naming something that does not exist (user, project, role)
# or content the server refuses; 1 is for everything else that went wrong.
EXIT_BAD_INPUT = 2


class CliError(Exception):
    """A problem to report as one line on stderr, then exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse's default prints the whole usage first; one line is easier to read in a log.
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def _port(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {raw!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535 (0 picks a free one), not {value}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="The tray notifier server. Without a subcommand it runs `serve`.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    serve = commands.add_parser("serve", help="run the server (the default)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    serve.add_argument(
        "--port", type=_port, default=8000, help="port to listen on; 0 picks a free one [8000]"
    )
    serve.add_argument(
        "--unix",
        metavar="PATH",
        help="listen on this unix socket (mode 0660) instead of --host/--port, "
        "e.g. for nginx on the same machine (docs/deployment.md)",
    )
    serve.add_argument(
        "--demo", action="store_true", help="add demo users and projects (once) and list the logins"
    )
    serve.add_argument(
        "--certfile",
        metavar="PATH",
        help="serve https and wss with this PEM certificate (chain); needs --keyfile",
    )
    serve.add_argument("--keyfile", metavar="PATH", help="the private key of --certfile (PEM)")

    notify = commands.add_parser(
        "notify", help="send a notification (to the server's database, as the server would)"
    )
    audience = notify.add_mutually_exclusive_group(required=True)
    audience.add_argument(
        "--user", action="append", metavar="USERNAME", help="a recipient; repeat for more"
    )
    audience.add_argument(
        "--project", action="append", type=int, metavar="ID", help="every member of a project"
    )
    audience.add_argument(
        "--role", action="append", metavar="NAME", help="everyone with a global role"
    )
    audience.add_argument("--everyone", action="store_true", help="every active user")
    audience.add_argument(
        "--batch",
        metavar="FILE",
        help="send many: one JSON publish body per line of FILE (- reads stdin), as "
        "POST /api/notifications/ takes it; prints one JSON result per line",
    )
    # Required unless --batch (checked in _notify): the batch's lines carry their own.
    notify.add_argument("--title", help="required unless --batch")
    notify.add_argument("--message")
    notify.add_argument("--priority", choices=["low", "normal", "high", "urgent"])
    notify.add_argument("--url", help="link the notification opens")

    commands.add_parser(
        "manage",
        help="Django management commands, e.g. `manage createsuperuser`",
        add_help=False,
    )
    api_key = commands.add_parser(
        "create-api-key", help="create a key for the publish API and print it once"
    )
    api_key.add_argument("name", metavar="NAME", help="what the key is for, e.g. ci-pipeline")

    create_user = commands.add_parser(
        "create-user",
        help="add a person who logs in with a password (--superuser: the first admin)",
    )
    create_user.add_argument("username", metavar="USERNAME")
    create_user.add_argument("--email", default="", help="their email address")
    create_user.add_argument("--first-name", default="", metavar="NAME")
    create_user.add_argument("--last-name", default="", metavar="NAME")
    create_user.add_argument(
        "--staff", action="store_true", help="may use the admin and publish notifications"
    )
    create_user.add_argument(
        "--superuser",
        action="store_true",
        help="every right in the admin, implies --staff (the first admin)",
    )
    create_user.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin instead of asking for it "
        "(scripts, provisioning: never put a password in a command line)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script. Returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help")):
        args.insert(0, "serve")
    try:
        if args[0] == "manage":
            # Everything after `manage` belongs to Django, --help included.
            return _manage(args[1:])
        options = _build_parser().parse_args(args)
        if options.command == "serve":
            return _serve(
                host=options.host,
                port=options.port,
                demo=options.demo,
                unix=options.unix,
                tls=_tls_files(options.certfile, options.keyfile),
            )
        if options.command == "notify":
            return _notify(options)
        if options.command == "create-api-key":
            return _create_api_key(options.name)
        if options.command == "create-user":
            return _create_user(options)
        raise CliError(f"unknown command {options.command!r}", EXIT_BAD_INPUT)
    except CliError as error:
        print(f"{PROG}: error: {error.message}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if _debug():
            raise
        print(
            f"{PROG}: error: unexpected {type(error).__name__}: {_first_line(error)} "
            "(set TRAY_DEBUG=1 to see the traceback)",
            file=sys.stderr,
        )
        return 1


def _debug() -> bool:
    return os.environ.get("TRAY_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --- Django ------------------------------------------------------------------------


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.config.settings")
    import django

    try:
        django.setup()
    except Exception as error:
        if type(error).__module__.startswith("dj_database_url"):
            raise CliError(
                "DATABASE_URL is not a database URL this server understands "
                f"({_first_line(error)}); use postgres://USER:PASSWORD@HOST:PORT/NAME "
                "or leave it unset for the built-in SQLite database"
            ) from None
        if type(error).__name__ == "ImproperlyConfigured":
            raise CliError(f"the settings are wrong: {_first_line(error)}") from None
        if isinstance(error, ValueError) and "logging" in str(error).lower():
            raise CliError(
                f"cannot set up logging ({_first_line(error)}); check TRAY_LOG_LEVEL"
            ) from None
        raise


@contextmanager
def _database_errors() -> Iterator[None]:
    """Turn "cannot connect" into one sentence that names the database."""
    from django.db import DatabaseError, InterfaceError, OperationalError

    try:
        yield
    except (OperationalError, InterfaceError) as error:
        raise CliError(
            f"cannot use the database {_database_name()}: {_first_line(error)}"
        ) from None
    except DatabaseError as error:
        raise CliError(f"database error on {_database_name()}: {_first_line(error)}") from None


def _database_name() -> str:
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        return str(database["NAME"])
    # Never the password: this line goes to logs.
    host = database.get("HOST") or "localhost"
    port = f":{database['PORT']}" if database.get("PORT") else ""
    return f"{database.get('NAME')} on {host}{port}"


# Any fixed number: PostgreSQL advisory locks are named by an integer.
_MIGRATION_LOCK_ID = 0x7261_7953


def _migrate() -> None:
    from django.core.management import call_command
    from django.db import connection

    with _database_errors():
        # Several server processes of one deployment may start at once on a fresh
        # PostgreSQL database; the lock makes the others wait and find nothing to do.
        locked = connection.vendor == "postgresql"
        if locked:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(%s)", [_MIGRATION_LOCK_ID])
        try:
            # verbosity 0: the first stdout line of `serve` is the listening line.
            call_command("migrate", interactive=False, verbosity=0)
        finally:
            if locked:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [_MIGRATION_LOCK_ID])


def _require_migrated() -> None:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    with _database_errors():
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        raise CliError(
            f"the database {_database_name()} is not set up yet: start the server once "
            f"({PROG}) or run `{PROG} manage migrate`"
        )


# --- serve -------------------------------------------------------------------------


def _bind(host: str, port: int) -> socket.socket:
    """Listen before serving, so that ``--port 0`` can report the port it got
    and a port in use is reported before anything else starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # Lets a restarted server take its port back while old connections linger in
    # TIME_WAIT; on Linux it never allows two listeners on one port.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise CliError(
                f"port {port} on {host} is already in use (another server running?); "
                "choose another with --port"
            ) from None
        if error.errno in (errno.EADDRNOTAVAIL, errno.EACCES) or isinstance(error, socket.gaierror):
            reason = error.strerror or _first_line(error)
            raise CliError(f"cannot listen on {host} port {port}: {reason}") from None
        raise CliError(f"cannot listen on {host} port {port}: {_first_line(error)}") from None
    return sock


def _bind_unix(path: str) -> socket.socket:
    """Listen on a unix socket: the upstream of a reverse proxy on the same machine.

    The socket file gets mode 0660, so only the server's user and group may connect
    (the proxy's user joins that group): X-Forwarded-* headers are believed on it.
    """
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise CliError(f"cannot listen on {path}: it exists and is not a socket")
        if _unix_socket_answers(path):
            raise CliError(f"{path} is already in use (another server running?)")
        os.unlink(path)  # left behind by a server that was killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # bind() creates the file with the umask's mode; nothing else runs yet in this process.
    previous_umask = os.umask(0o117)
    try:
        sock.bind(path)
    except OSError as error:
        sock.close()
        raise CliError(f"cannot listen on {path}: {error.strerror or _first_line(error)}") from None
    finally:
        os.umask(previous_umask)
    return sock


def _unix_socket_answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def _ws_implementation(compression: str = "off") -> tuple[str | type[asyncio.Protocol], bool]:
    """uvicorn's ``ws`` and ``ws_per_message_deflate`` for a TRAY_WS_COMPRESSION value."""
    import uvicorn.config

    from backend.ws_compression import uvicorn_ws_options

    # It prefers the sans-I/O implementation, the one maintained against websockets >= 14,
    # and falls back to the legacy one, all older uvicorn releases have.
    return uvicorn_ws_options(compression, uvicorn.config.WS_PROTOCOLS)


def _base_url(sock: socket.socket, *, secure: bool = False) -> str:
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    scheme = "https" if secure else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _tls_files(certfile: str | None, keyfile: str | None) -> tuple[str, str] | None:
    """``(certfile, keyfile)`` checked before anything starts, or None for plain http."""
    if certfile is None and keyfile is None:
        return None
    if not certfile or not keyfile:
        raise CliError("--certfile and --keyfile go together: give both", EXIT_BAD_INPUT)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certfile, keyfile)
    except OSError as error:  # ssl.SSLError is an OSError too
        reason = getattr(error, "reason", None) or error.strerror or _first_line(error)
        raise CliError(
            f"cannot use the certificate {certfile} with the key {keyfile}: {reason}",
            EXIT_BAD_INPUT,
        ) from None
    return certfile, keyfile


def _set_switch_interval() -> None:
    """The GIL hand-over interval of TRAY_SWITCH_INTERVAL_MS (settings.py says why)."""
    from django.conf import settings

    milliseconds = settings.TRAY["SWITCH_INTERVAL_MS"]
    if not 0 < milliseconds <= 1000:  # also refuses nan
        raise CliError(
            f"TRAY_SWITCH_INTERVAL_MS must be more than 0 and at most 1000, got {milliseconds}",
            EXIT_BAD_INPUT,
        )
    sys.setswitchinterval(milliseconds / 1000)


def _tune_collector(threshold: int) -> None:
    """Python's cyclic garbage collector, set for a process holding thousands of sockets.

    With Python's defaults (700, 10, 10) a server with 2,000 sockets held ~310,000
    tracked objects and ran a full collection every 8-10 s under B3's load, each
    stopping everything for 160-220 ms: the tail of every delivery in flight
    (docs/performance.md, "The garbage collector's pauses"). What was loaded at start
    (Django, the URL and app registries: ~100,000 objects that live as long as the
    process) is frozen out of every collection, and a collection of the youngest
    generation waits for TRAY_GC_THRESHOLD new objects instead of 700, so the
    short-lived objects of a delivery die of their reference counts before a
    collection can promote them, and the full collections become rare.

    Args:
        threshold: TRAY_GC_THRESHOLD (``_collector_threshold``); 0 keeps Python's.
    """
    gc.collect()
    gc.freeze()
    if threshold:
        gc.set_threshold(threshold, *gc.get_threshold()[1:])


def _collector_threshold() -> int:
    """TRAY_GC_THRESHOLD, checked before the server starts."""
    from django.conf import settings

    threshold: int = settings.TRAY["GC_THRESHOLD"]
    if threshold < 0:
        raise CliError(f"TRAY_GC_THRESHOLD must be 0 or more, got {threshold}", EXIT_BAD_INPUT)
    return threshold


def _serve(
    *,
    host: str,
    port: int,
    demo: bool,
    unix: str | None = None,
    tls: tuple[str, str] | None = None,
) -> int:
    _setup_django()
    _set_switch_interval()
    collector_threshold = _collector_threshold()
    _refuse_demo_in_production(demo)
    sock = _bind_unix(unix) if unix else _bind(host, port)
    try:
        _migrate()
        summary = _seed_demo() if demo else None
        # Their connection (this thread's) serves nothing; kept open, it would keep
        # SQLite's shared state of a read-only database file read-only for good.
        from django.db import connections

        connections.close_all()

        def started() -> None:
            _tune_collector(collector_threshold)
            _announce(sock, summary, secure=tls is not None)

        return _run_uvicorn(sock, on_started=started, tls=tls)
    finally:
        sock.close()
        if unix:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(unix)


def _refuse_demo_in_production(demo: bool) -> None:
    """Before the database is touched: production never gets the demo's admin/demo login."""
    from django.conf import settings

    from backend.config.production import demo_problem

    problem = demo_problem(demo) if settings.PRODUCTION else None
    if problem is not None:
        raise CliError(problem, EXIT_BAD_INPUT)


def _seed_demo() -> DemoSummary:
    from backend.demo import seed_demo

    with _database_errors():
        return seed_demo()


def _announce(sock: socket.socket, summary: DemoSummary | None, *, secure: bool = False) -> None:
    url = _base_url(sock, secure=secure)
    lines = [f"{LISTENING_PREFIX}{url}"]
    if url.startswith("unix:"):
        lines.append(f"{PROG}: websocket path {WEBSOCKET_PATH} on {url}")
    else:
        # wss on the same port when serving https.
        ws_url = "ws" + url.removeprefix("http") + WEBSOCKET_PATH
        lines.append(f"{PROG}: websocket {ws_url}")
    if summary is not None:
        logins = ", ".join(f"{user} / {password}" for user, password in summary.logins)
        lines.append(f"{PROG}: demo logins: {logins} (admin is staff: {url}/admin/)")
    print("\n".join(lines), flush=True)


def _run_uvicorn(
    sock: socket.socket,
    *,
    on_started: Callable[[], None],
    tls: tuple[str, str] | None = None,
) -> int:
    import uvicorn
    from django.conf import settings

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                on_started()

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # uvicorn closes every WebSocket with 1012 and then waits for open HTTP
            # answers: the event streams end first, with 1012 too.
            from backend.notifications import stream

            stream.end_all()
            await super().shutdown(sockets=sockets)

    ws, per_message_deflate = _ws_implementation(settings.TRAY["WS_COMPRESSION"])
    config = uvicorn.Config(
        "backend.config.asgi:application",
        lifespan="on",
        # httptools, with a single publish answered below ASGI (issue 14).
        http=_http_protocol(),
        ws=ws,
        ws_max_size=settings.TRAY["WS_MAX_FRAME_BYTES"],
        # Protocol pings notice a dead peer even when the client sends nothing.
        ws_ping_interval=10,
        ws_ping_timeout=10,
        # TRAY_WS_COMPRESSION; "tuned" passes its extension through the protocol class.
        ws_per_message_deflate=per_message_deflate,
        # The client's address and scheme from the reverse proxy's X-Forwarded-For/-Proto,
        # believed only from TRAY_FORWARDED_ALLOW_IPS; on a unix socket the file's
        # permissions (0660) say who may connect, and uvicorn sees no address to check.
        proxy_headers=True,
        forwarded_allow_ips="*" if sock.family == socket.AF_UNIX else settings.FORWARDED_ALLOW_IPS,
        # A copy: dictConfig consumes the "()" factory keys of the dict it is given.
        log_config=copy.deepcopy(settings.LOGGING),
        # --certfile/--keyfile: https and wss on the same port.
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
        # Sockets get close code 1012 at shutdown; this bounds the wait for them.
        timeout_graceful_shutdown=5,
    )
    server = Server(config)
    # uvicorn handles SIGTERM/SIGINT while serving and re-raises the signal to the
    # previous handler once it has shut down; these handlers make that a clean exit 0.
    previous = {sig: signal.signal(sig, _ignore_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _http_protocol() -> type[asyncio.Protocol] | str:
    """uvicorn's ``http``: its httptools protocol, with the fast single publish served
    without an ASGI task (backend/config/publish_protocol.py), where that protocol
    has the hook it builds on; uvicorn's own choice otherwise."""
    try:
        from backend.config.publish_protocol import PublishHttpProtocol
    except ImportError:  # no httptools
        return "auto"
    from backend.uvicorn_release import internals_tested

    # The protocol builds on uvicorn's internals (RequestResponseCycle, the task hook),
    # which a minor release may change: only on the releases its tests ran against.
    if not internals_tested():
        return "auto"
    if not hasattr(PublishHttpProtocol, "_start_asgi_task"):
        return "auto"
    return PublishHttpProtocol


def _ignore_signal(signum: int, frame: object) -> None:
    return None


# --- notify, create-api-key, create-user, manage --------------------------------------


def _audience(options: argparse.Namespace) -> tuple[Audience, int | None, str]:
    """The audience the flags name, and the project when exactly one is named."""
    from backend.notifications.selectors import Audience
    from backend.projects.models import Project
    from backend.users.models import Role, User

    if options.everyone:
        return Audience(everyone=True), None, ""
    if options.user:
        wanted = list(dict.fromkeys(options.user))
        found = dict(User.objects.filter(username__in=wanted).values_list("username", "id"))
        unknown = [name for name in wanted if name not in found]
        if unknown:
            raise CliError(f"no such user: {', '.join(unknown)}", EXIT_BAD_INPUT)
        return Audience(users=tuple(found[name] for name in wanted)), None, ""
    if options.project:
        wanted_ids = list(dict.fromkeys(options.project))
        titles = dict(Project.objects.filter(id__in=wanted_ids).values_list("id", "title"))
        missing = [str(pid) for pid in wanted_ids if pid not in titles]
        if missing:
            raise CliError(f"no project with id {', '.join(missing)}", EXIT_BAD_INPUT)
        if len(wanted_ids) == 1:
            return Audience(projects=(wanted_ids[0],)), wanted_ids[0], titles[wanted_ids[0]]
        return Audience(projects=tuple(wanted_ids)), None, ""
    wanted_roles = list(dict.fromkeys(options.role))
    known = set(Role.objects.values_list("name", flat=True))
    unknown = [name for name in wanted_roles if name not in known]
    if unknown:
        hint = f" (roles: {', '.join(sorted(known))})" if known else " (there are no roles yet)"
        raise CliError(f"no such role: {', '.join(unknown)}{hint}", EXIT_BAD_INPUT)
    return Audience(roles=tuple(wanted_roles)), None, ""


def _notify(options: argparse.Namespace) -> int:
    content = (options.title, options.message, options.priority, options.url)
    if options.batch is not None:
        if any(value is not None for value in content):
            raise CliError(
                "--batch takes each notification from its line: "
                "leave out --title, --message, --priority and --url",
                EXIT_BAD_INPUT,
            )
        return _notify_batch(options.batch)
    if options.title is None:
        raise CliError("the following arguments are required: --title", EXIT_BAD_INPUT)
    options.message = options.message or ""
    options.priority = options.priority or "normal"
    options.url = options.url or ""
    _setup_django()
    _require_migrated()
    from backend.errors import BackendError
    from backend.notifications.selectors import audience_user_ids
    from backend.notifications.services import CLI_PUBLISHER, notification_create

    with _database_errors():
        audience, project_id, project_title = _audience(options)
        if not audience_user_ids(audience):
            print("no recipients: nobody active is in that audience, so nothing was sent")
            return 0
        try:
            result = notification_create(
                audience=audience,
                title=options.title,
                message=options.message,
                priority=options.priority,
                url=options.url,
                project_id=project_id,
                project_title=project_title,
                publisher=CLI_PUBLISHER,
            )
        except BackendError as error:
            raise CliError(error.message, EXIT_BAD_INPUT) from None
    count = result.recipient_count
    print(f"sent to {count} recipient{'' if count == 1 else 's'} (message {result.message.pk})")
    return 0


def _read_lines(source: str) -> list[str]:
    try:
        if source == "-":
            return sys.stdin.read().splitlines()
        with open(source, encoding="utf-8") as file:
            return file.read().splitlines()
    except OSError as error:
        raise CliError(f"cannot read {source}: {error.strerror or error}", EXIT_BAD_INPUT) from None
    except UnicodeDecodeError as error:
        raise CliError(f"{source} is not UTF-8 text: {error.reason}", EXIT_BAD_INPUT) from None


def _notify_batch(source: str) -> int:
    """``notify --batch``: each non-blank line a publish body, sent as POST .../batch/ does.

    Up to 1,000 lines go in one transaction; a longer file is sent 1,000 lines at a
    time. A line that is not JSON, or not a valid body, is that line's error and the
    others are still sent; the exit code is then 2. Idempotency keys are scoped to the
    command (``CLI_PUBLISHER``), so sending a file again sends what was not sent.
    """
    import json

    lines = [(number, text) for number, text in enumerate(_read_lines(source), 1) if text.strip()]
    if not lines:
        raise CliError(f"{source} has no notifications: one JSON body per line", EXIT_BAD_INPUT)
    _setup_django()
    _require_migrated()
    from backend.api import error_body
    from backend.errors import BackendError, InvalidInput
    from backend.notifications.publish_input import MAX_BATCH_ITEMS, parse_publish_many
    from backend.notifications.services import CLI_PUBLISHER, notification_create_batch

    counts = {"created": 0, "duplicate": 0, "error": 0}
    for start in range(0, len(lines), MAX_BATCH_ITEMS):
        chunk = lines[start : start + MAX_BATCH_ITEMS]
        documents: list[object] = []
        broken: dict[int, InvalidInput] = {}
        for position, (number, text) in enumerate(chunk):
            try:
                documents.append(json.loads(text))
            except ValueError as error:
                broken[position] = InvalidInput(
                    f"line {number} is not JSON: {error}", code="invalid_json"
                )
                documents.append(None)
        with _database_errors():
            parsed = parse_publish_many(documents)
            items = [broken.get(i, item) for i, item in enumerate(parsed)]
            outcomes = notification_create_batch(items=items, publisher=CLI_PUBLISHER)
        for (number, _), outcome in zip(chunk, outcomes, strict=True):
            counts[outcome.status] += 1
            result: dict[str, object] = {"line": number, "status": outcome.status}
            if isinstance(outcome.error, BackendError):
                result["error"] = error_body(outcome.error)
            else:
                result["id"] = outcome.message_id
                result["recipients"] = outcome.recipients
            print(json.dumps(result))
    print(
        f"{PROG}: {counts['created']} sent, {counts['duplicate']} duplicate"
        f"{'' if counts['duplicate'] == 1 else 's'}, {counts['error']} "
        f"error{'' if counts['error'] == 1 else 's'}",
        file=sys.stderr,
    )
    return EXIT_BAD_INPUT if counts["error"] else 0


def _create_api_key(name: str) -> int:
    _setup_django()
    _require_migrated()
    from backend.errors import BackendError
    from backend.notifications.services import api_key_create

    with _database_errors():
        try:
            key, raw = api_key_create(name=name)
        except BackendError as error:
            raise CliError(error.message, EXIT_BAD_INPUT) from None
    print(raw)
    print(
        f"{PROG}: API key {key.name!r} ({key.prefix}...) created; "
        "this is the only time it is shown",
        file=sys.stderr,
    )
    return 0


def _read_password(from_stdin: bool) -> str:
    """The new account's password: stdin's first line, or asked twice on a terminal."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password.removesuffix("\r")
        if not password:
            raise CliError(
                "no password on stdin (--password-stdin reads its first line)", EXIT_BAD_INPUT
            )
        return password
    if not sys.stdin.isatty():
        raise CliError(
            "no terminal to ask for the password: pipe it in with --password-stdin",
            EXIT_BAD_INPUT,
        )
    import getpass

    password = getpass.getpass("Password: ")
    if password != getpass.getpass("Password (again): "):
        raise CliError("the two passwords differ; nothing was created", EXIT_BAD_INPUT)
    if not password:
        raise CliError("an empty password; nothing was created", EXIT_BAD_INPUT)
    return password


def _create_user(options: argparse.Namespace) -> int:
    """``create-user``: an active account, checked as the REST API's ``POST /api/users/``
    checks it (backend/users/services.py: a taken username, a weak password)."""
    _setup_django()
    _require_migrated()
    password = _read_password(options.password_stdin)
    from backend.errors import BackendError
    from backend.users.services import user_create

    with _database_errors():
        try:
            user = user_create(
                username=options.username,
                password=password,
                email=options.email,
                first_name=options.first_name,
                last_name=options.last_name,
                is_staff=options.staff or options.superuser,
                is_superuser=options.superuser,
            )
        except BackendError as error:
            raise CliError(error.message, EXIT_BAD_INPUT) from None
    kind = "superuser" if user.is_superuser else "staff user" if user.is_staff else "user"
    print(f"{PROG}: created {kind} {user.username!r} (id {user.pk})")
    return 0


def _manage(rest: list[str]) -> int:
    _setup_django()
    from django.core.management import execute_from_command_line

    execute_from_command_line([f"{PROG} manage", *rest])
    return 0


if __name__ == "__main__":
    sys.exit(main())
