"""The web companion's pages, at the server's root.

The paths are the links the server's own notifications carry (``project_url``:
``/projects/3/tasks/7``, no trailing slash); a trailing slash is taken too.
"""

from django.urls import URLPattern, path, re_path

from backend.web import views

ID = r"(?P<{}>[0-9]{{1,18}})"

urlpatterns: list[URLPattern] = [
    path("", views.home, name="web-home"),
    path("login/", views.log_in, name="web-login"),
    path("logout/", views.log_out, name="web-logout"),
    path("password/", views.password, name="web-password"),
    path("inbox/change/", views.change, name="web-inbox-change"),
    path("attention/dnd/", views.do_not_disturb, name="web-do-not-disturb"),
    re_path(
        rf"^notifications/{ID.format('inbox_id')}/?$", views.notification, name="web-notification"
    ),
    re_path(r"^projects/?$", views.projects, name="web-projects"),
    re_path(rf"^projects/{ID.format('project_id')}/?$", views.project, name="web-project"),
    re_path(
        rf"^projects/{ID.format('project_id')}/(?P<section>members|milestones|tasks)/?$",
        views.project,
        name="web-project-section",
    ),
    re_path(
        rf"^projects/{ID.format('project_id')}/milestones/{ID.format('milestone_id')}/?$",
        views.milestone,
        name="web-milestone",
    ),
    re_path(
        rf"^projects/{ID.format('project_id')}/tasks/{ID.format('task_id')}/?$",
        views.task,
        name="web-task",
    ),
]
