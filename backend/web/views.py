"""The web companion's pages: server-rendered, thin over the same selectors the REST
API reads, behind Django's session login.

Every page a notification links to resolves for a user who may see it, and is a 404
for anyone else, worded exactly like a missing one (the selectors' ``NotFound``), so
ids do not tell what exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any
from urllib.parse import quote, urlencode

from django.contrib.auth.forms import AuthenticationForm
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from backend.attention.selectors import attention_of
from backend.attention.services import attention_update
from backend.errors import InvalidInput, NotFound
from backend.notifications import selectors as inbox
from backend.notifications import services as inbox_services
from backend.notifications.models import Priority
from backend.projects import selectors as projects_selectors
from backend.projects.models import TaskStatus
from backend.projects.services import project_url
from backend.users import web_sessions
from backend.users.models import User
from backend.users.throttling import login_attempt_allowed

PAGE_SIZE = 50

View = Callable[..., HttpResponse]


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # behind _logged_in
    return user


def _logged_in(view: View) -> View:
    """The page for a logged-in user; anyone else goes to the login, and back after it."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if web_sessions.live_user(request) is None:
            back = request.get_full_path() if request.method == "GET" else "/"
            return HttpResponseRedirect(f"/?next={quote(back, safe='/')}")
        try:
            return view(request, *args, **kwargs)
        except NotFound as error:
            raise Http404(error.message) from error

    return guarded


def _page(
    request: HttpRequest,
    template: str,
    *,
    state: inbox.InboxState | None = None,
    **context: Any,
) -> HttpResponse:
    """``template`` with the bell's count and, for the page's socket (live.js), the
    newest seq the page shows: ``state`` as read before the page's rows, so the socket
    resumes from no later than them."""
    user = request.user
    if isinstance(user, User):
        if state is None:
            state = inbox.inbox_state(user_id=user.pk)
        context["unread_count"] = state.unread_count
        context["latest_seq"] = state.latest_seq
        attention = attention_of(user_id=user.pk)
        context["dnd"] = attention["dnd"]
        # For live.js, which decides what interrupts by the same rules as the desktop.
        context["attention_json"] = attention
    return render(request, f"web/{template}", context)


def _next_page(request: HttpRequest) -> str:
    """Where to go after logging in: ``next`` when it is a path on this server."""
    target = request.POST.get("next") or request.GET.get("next") or "/"
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ) and target.startswith("/"):
        return target
    return "/"


def _login_page(
    request: HttpRequest, form: AuthenticationForm, *, status: int = 200, refusal: str = ""
) -> HttpResponse:
    response = _page(
        request, "login.html", form=form, next=_next_page(request), title="Log in", refusal=refusal
    )
    response.status_code = status
    return response


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The inbox, or the login for a visitor who is not logged in."""
    if web_sessions.live_user(request) is None:
        return _login_page(request, AuthenticationForm(request))
    return _inbox(request)


def _number(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) < 19 else None


def _inbox(request: HttpRequest) -> HttpResponse:
    """The inbox, newest first, a page at a time (``before``: the seq to go on below),
    filtered by ``unread``, ``project``, ``priority`` and a search ``q``."""
    user = _user(request)
    query = request.GET
    unread_only = query.get("unread") == "1"
    project_id = _number(query.get("project", ""))
    priority = query.get("priority", "")
    if priority not in Priority.values:
        priority = ""
    search = query.get("q", "").strip()[:200]
    state = inbox.inbox_state(user_id=user.pk)
    rows = inbox.inbox_list(
        user_id=user.pk,
        before_seq=_number(query.get("before", "")),
        limit=PAGE_SIZE + 1,
        unread=True if unread_only else None,
        project_id=project_id,
        priority=priority or None,
        search=search or None,
    )
    filters = {
        key: value
        for key, value in (
            ("unread", "1" if unread_only else ""),
            ("project", str(project_id or "")),
            ("priority", priority),
            ("q", search),
        )
        if value
    }
    older = None
    if len(rows) > PAGE_SIZE:
        older = "/?" + urlencode({**filters, "before": rows[PAGE_SIZE - 1].seq})
    return _page(
        request,
        "inbox.html",
        state=state,
        first_page=not filters and not query.get("before"),
        rows=rows[:PAGE_SIZE],
        older=older,
        filters=filters,
        here=request.get_full_path(),
        unread_only=unread_only,
        projects=projects_selectors.project_list(user=user),
        project_id=project_id,
        priorities=Priority.choices,
        priority=priority,
        search=search,
        title="Inbox",
    )


# The inbox's buttons: what each does to the rows it names.
_CHANGES = {
    "read": inbox_services.inbox_mark_read,
    "unread": inbox_services.inbox_mark_unread,
    "delete": inbox_services.inbox_delete,
}


@require_POST
@_logged_in
def change(request: HttpRequest) -> HttpResponse:
    """A button of the inbox or a notification's page: mark read, unread, delete (the
    rows in ``id``), or everything read (``all``); then back to the page it came from.
    Ids that are not the user's are left alone, as over the API."""
    user = _user(request)
    action = request.POST.get("action", "")
    try:
        if action == "all":
            inbox_services.inbox_mark_all_read(user_id=user.pk)
        elif action in _CHANGES:
            ids = [_number(value) for value in request.POST.getlist("id")]
            if None in ids:
                raise InvalidInput("Every id must be a positive whole number.")
            _CHANGES[action](user_id=user.pk, ids=ids)
        else:
            raise InvalidInput(f"Unknown action {action[:50]!r}.")
    except InvalidInput as error:
        return HttpResponse(error.message, status=400, content_type="text/plain; charset=utf-8")
    back = _next_page(request)
    if action == "delete" and back.startswith("/notifications/"):
        back = "/"  # its page is gone
    return HttpResponseRedirect(back)


# The header's do-not-disturb choices: how long, from now.
_DND_CHOICES: dict[str, timedelta | None] = {"1h": timedelta(hours=1), "on": None}


@require_POST
@_logged_in
def do_not_disturb(request: HttpRequest) -> HttpResponse:
    """The header's do-not-disturb button: on for an hour (``1h``), until turned off
    (``on``), or ``off``; on every device of the user (their attention settings)."""
    choice = request.POST.get("dnd", "")
    if choice == "off":
        change: dict[str, Any] = {"dnd": None}
    elif choice in _DND_CHOICES:
        length = _DND_CHOICES[choice]
        until = None if length is None else (timezone.now() + length).isoformat()
        change = {"dnd": {"until": until}}
    else:
        return HttpResponse(
            "Choose 1h, on or off.", status=400, content_type="text/plain; charset=utf-8"
        )
    attention_update(user_id=_user(request).pk, changes=change)
    return HttpResponseRedirect(_next_page(request))


@require_POST
def log_in(request: HttpRequest) -> HttpResponse:
    """The login form's POST: the same per-address budget as the API's login
    (``TRAY_LOGIN_RATE``), spent before the password is checked."""
    wait = login_attempt_allowed(request)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        response = _login_page(
            request,
            AuthenticationForm(request),
            status=429,
            refusal=f"Too many login attempts from your address. Try again in {seconds} seconds.",
        )
        response["Retry-After"] = str(seconds)
        return response
    form = AuthenticationForm(request, data=request.POST)
    if not form.is_valid():
        return _login_page(request, form, status=400)
    web_sessions.log_in(request, form.get_user())
    return HttpResponseRedirect(_next_page(request))


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 404 for every page outside the API, in the companion's frame."""
    response = _page(request, "404.html", title="Not found")
    response.status_code = 404
    return response


def _password_page(
    request: HttpRequest, *, status: int = 200, error: str = "", changed: bool = False
) -> HttpResponse:
    response = _page(
        request, "password.html", error=error, changed=changed, title="Change password"
    )
    response.status_code = status
    return response


@require_http_methods(["GET", "POST"])
@_logged_in
def password(request: HttpRequest) -> HttpResponse:
    """Change your password: your other sessions end (desktops and browsers, their
    sockets closed), this one goes on. Throttled with the login (``TRAY_LOGIN_RATE``),
    before the current password is checked. A plain form: no script needed."""
    if request.method == "GET":
        return _password_page(request, changed=request.GET.get("changed") == "1")
    wait = login_attempt_allowed(request)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        response = _password_page(
            request,
            status=429,
            error=f"Too many password attempts from your address. Try again in {seconds} seconds.",
        )
        response["Retry-After"] = str(seconds)
        return response
    new_password = request.POST.get("new_password", "")
    if new_password != request.POST.get("new_password_again", ""):
        return _password_page(request, status=400, error="The two new passwords differ.")
    try:
        web_sessions.change_password(
            request,
            _user(request),
            current_password=request.POST.get("current_password", "")[:4096],
            new_password=new_password[:4096],
        )
    except InvalidInput as error:
        return _password_page(request, status=400, error=error.message)
    return HttpResponseRedirect("/password/?changed=1")


@require_POST
def log_out(request: HttpRequest) -> HttpResponse:
    web_sessions.log_out(request)
    return HttpResponseRedirect("/")


@require_GET
@_logged_in
def notification(request: HttpRequest, inbox_id: str) -> HttpResponse:
    user = _user(request)
    row = inbox.inbox_get(user_id=user.pk, inbox_id=int(inbox_id))
    if row.read_at is None:
        # Opened is read, as the desktop's "Open" has it; "Mark unread" undoes it.
        inbox_services.inbox_mark_read(user_id=user.pk, ids=[row.pk])
    return _page(
        request,
        "notification.html",
        row=row,
        here=f"/notifications/{row.pk}",
        title=row.message.title,
    )


@require_GET
@_logged_in
def projects(request: HttpRequest) -> HttpResponse:
    found = projects_selectors.project_list(user=_user(request))
    return _page(request, "projects.html", projects=found, title="Projects")


@require_GET
@_logged_in
def project(request: HttpRequest, project_id: str, section: str = "") -> HttpResponse:
    user = _user(request)
    found = projects_selectors.project_get(user=user, project_id=project_id)
    tasks = list(projects_selectors.task_list(user=user, project_id=found.pk))
    by_status = [
        (label, [task for task in tasks if task.status == value])
        for value, label in TaskStatus.choices
    ]
    return _page(
        request,
        "project.html",
        project=found,
        members=projects_selectors.member_list(user=user, project_id=found.pk),
        milestones=projects_selectors.milestone_list(user=user, project_id=found.pk),
        by_status=by_status,
        section=section,
        title=found.title,
    )


@require_GET
@_logged_in
def milestone(request: HttpRequest, project_id: str, milestone_id: str) -> HttpResponse:
    user = _user(request)
    found = projects_selectors.milestone_get(
        user=user, project_id=project_id, milestone_id=milestone_id
    )
    tasks = projects_selectors.task_list(user=user, project_id=found.project_id).filter(
        milestone_id=found.pk
    )
    return _page(
        request,
        "milestone.html",
        milestone=found,
        tasks=tasks,
        history=inbox.inbox_about(
            user_id=user.pk, url=project_url(found.project_id, "milestones", found.pk)
        ),
        title=f"{found.title} · {found.project.title}",
    )


@require_GET
@_logged_in
def task(request: HttpRequest, project_id: str, task_id: str) -> HttpResponse:
    user = _user(request)
    found = projects_selectors.task_get(user=user, project_id=project_id, task_id=task_id)
    return _page(
        request,
        "task.html",
        task=found,
        history=inbox.inbox_about(
            user_id=user.pk, url=project_url(found.project_id, "tasks", found.pk)
        ),
        title=f"{found.title} · {found.project.title}",
    )
