"""Routes of the projects API, included at /api/.

Ids are matched as any path segment (``str``) and checked by the selectors, so a
malformed id gets the API's JSON 404 rather than Django's HTML one.
"""

from django.urls import URLPattern, URLResolver, path

from backend.projects import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("projects/", api.ProjectListApi.as_view(), name="project-list"),
    path("projects/<str:project_id>/", api.ProjectDetailApi.as_view(), name="project-detail"),
    path("projects/<str:project_id>/members/", api.MemberListApi.as_view(), name="project-members"),
    path(
        "projects/<str:project_id>/members/<str:membership_id>/",
        api.MemberDetailApi.as_view(),
        name="project-member",
    ),
    path(
        "projects/<str:project_id>/milestones/",
        api.MilestoneListApi.as_view(),
        name="project-milestones",
    ),
    path(
        "projects/<str:project_id>/milestones/<str:milestone_id>/",
        api.MilestoneDetailApi.as_view(),
        name="project-milestone",
    ),
    path("projects/<str:project_id>/tasks/", api.TaskListApi.as_view(), name="project-tasks"),
    path(
        "projects/<str:project_id>/tasks/<str:task_id>/",
        api.TaskDetailApi.as_view(),
        name="project-task",
    ),
]
