"""REST endpoints of projects, their team, milestones and tasks.

Thin views: a serializer checks the body's shape, a selector finds the objects
(NotFound for anything outside the caller's projects), a service does the
change, checks rights and notifies. Ids in the path are taken as text and
checked by the selectors, so "abc", "-1" or a 30-digit id is a JSON 404 like
any missing object, not an HTML page or a database overflow.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.api import ErrorSerializer, WriteRateThrottle
from backend.errors import NotAuthenticated
from backend.projects import selectors, services
from backend.projects.models import Milestone
from backend.projects.serializers import (
    MembershipCreateInput,
    MembershipOutput,
    MembershipUpdateInput,
    MilestoneCreateInput,
    MilestoneOutput,
    MilestoneUpdateInput,
    ProjectCreateInput,
    ProjectOutput,
    ProjectUpdateInput,
    TaskCreateInput,
    TaskOutput,
    TaskUpdateInput,
)
from backend.users.models import User

TAGS = ["projects"]


def _path_id(name: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.INT, OpenApiParameter.PATH)


PROJECT_ID = [_path_id("project_id")]


def _actor(request: Request) -> User:
    user = request.user
    if not isinstance(user, User):
        raise NotAuthenticated("Log in first.")
    return user


def _valid(serializer_class: type[Any], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    data: dict[str, Any] = serializer.validated_data
    return data


# --- projects ---------------------------------------------------------------------------


class ProjectListApi(APIView):
    # Creating is throttled per user (REST_FRAMEWORK's "project_create" rate).
    throttle_classes = [WriteRateThrottle]
    throttle_scope = "project_create"

    @extend_schema(tags=TAGS, responses={200: ProjectOutput(many=True)})
    def get(self, request: Request) -> Response:
        projects = selectors.project_list(user=_actor(request))
        return Response(ProjectOutput(projects, many=True).data)

    @extend_schema(
        tags=TAGS,
        request=ProjectCreateInput,
        responses={
            201: ProjectOutput,
            400: ErrorSerializer,
            403: ErrorSerializer,
            429: ErrorSerializer,
        },
        description="Staff and users granted the right (`projects.add_project`, in the "
        "admin) create projects; anyone else gets 403 (`GET /api/me` says "
        "`can_create_projects`). Throttled per user.",
    )
    def post(self, request: Request) -> Response:
        actor = _actor(request)
        data = _valid(ProjectCreateInput, request)
        project = services.project_create(actor=actor, **data)
        project = selectors.project_get(user=actor, project_id=project.pk)
        return Response(ProjectOutput(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    @extend_schema(tags=TAGS, parameters=PROJECT_ID, responses={200: ProjectOutput})
    def get(self, request: Request, project_id: str) -> Response:
        project = selectors.project_get(user=_actor(request), project_id=project_id)
        return Response(ProjectOutput(project).data)

    @extend_schema(
        tags=TAGS,
        parameters=PROJECT_ID,
        request=ProjectUpdateInput,
        responses={200: ProjectOutput},
    )
    def patch(self, request: Request, project_id: str) -> Response:
        actor = _actor(request)
        project = selectors.project_get(user=actor, project_id=project_id)
        data = _valid(ProjectUpdateInput, request)
        services.project_update(actor=actor, project=project, **data)
        project = selectors.project_get(user=actor, project_id=project.pk)
        return Response(ProjectOutput(project).data)

    @extend_schema(tags=TAGS, parameters=PROJECT_ID, responses={204: None})
    def delete(self, request: Request, project_id: str) -> Response:
        actor = _actor(request)
        project = selectors.project_get(user=actor, project_id=project_id)
        services.project_delete(actor=actor, project=project)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- team -------------------------------------------------------------------------------

MEMBER_IDS = [*PROJECT_ID, _path_id("membership_id")]


class MemberListApi(APIView):
    # Adding people is throttled per user (REST_FRAMEWORK's "member_add" rate).
    throttle_classes = [WriteRateThrottle]
    throttle_scope = "member_add"

    @extend_schema(tags=TAGS, parameters=PROJECT_ID, responses={200: MembershipOutput(many=True)})
    def get(self, request: Request, project_id: str) -> Response:
        members = selectors.member_list(user=_actor(request), project_id=project_id)
        return Response(MembershipOutput(members, many=True).data)

    @extend_schema(
        tags=TAGS,
        parameters=PROJECT_ID,
        request=MembershipCreateInput,
        responses={
            201: MembershipOutput,
            400: ErrorSerializer,
            403: ErrorSerializer,
            404: ErrorSerializer,
            429: ErrorSerializer,
        },
        description="Owners and managers add active users. Anyone else gets the same "
        "403 whatever the user, and an unknown and an inactive user get the same 400, "
        "so the answers do not tell who has an account. Throttled per user.",
    )
    def post(self, request: Request, project_id: str) -> Response:
        actor = _actor(request)
        project = selectors.project_get(user=actor, project_id=project_id)
        data = _valid(MembershipCreateInput, request)
        user = selectors.user_to_add_get(
            actor=actor,
            project_id=project.pk,
            user_id=data.pop("user_id", None),
            username=data.pop("username", None),
        )
        membership = services.membership_add(actor=actor, project=project, user=user, **data)
        return Response(MembershipOutput(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailApi(APIView):
    @extend_schema(tags=TAGS, parameters=MEMBER_IDS, responses={200: MembershipOutput})
    def get(self, request: Request, project_id: str, membership_id: str) -> Response:
        membership = selectors.membership_get(
            user=_actor(request), project_id=project_id, membership_id=membership_id
        )
        return Response(MembershipOutput(membership).data)

    @extend_schema(
        tags=TAGS,
        parameters=MEMBER_IDS,
        request=MembershipUpdateInput,
        responses={200: MembershipOutput},
    )
    def patch(self, request: Request, project_id: str, membership_id: str) -> Response:
        actor = _actor(request)
        membership = selectors.membership_get(
            user=actor, project_id=project_id, membership_id=membership_id
        )
        data = _valid(MembershipUpdateInput, request)
        membership = services.membership_update(actor=actor, membership=membership, **data)
        return Response(MembershipOutput(membership).data)

    @extend_schema(tags=TAGS, parameters=MEMBER_IDS, responses={204: None})
    def delete(self, request: Request, project_id: str, membership_id: str) -> Response:
        actor = _actor(request)
        membership = selectors.membership_get(
            user=actor, project_id=project_id, membership_id=membership_id
        )
        services.membership_remove(actor=actor, membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- milestones -------------------------------------------------------------------------

MILESTONE_IDS = [*PROJECT_ID, _path_id("milestone_id")]


class MilestoneListApi(APIView):
    @extend_schema(tags=TAGS, parameters=PROJECT_ID, responses={200: MilestoneOutput(many=True)})
    def get(self, request: Request, project_id: str) -> Response:
        milestones = selectors.milestone_list(user=_actor(request), project_id=project_id)
        return Response(MilestoneOutput(milestones, many=True).data)

    @extend_schema(
        tags=TAGS,
        parameters=PROJECT_ID,
        request=MilestoneCreateInput,
        responses={201: MilestoneOutput},
    )
    def post(self, request: Request, project_id: str) -> Response:
        actor = _actor(request)
        project = selectors.project_get(user=actor, project_id=project_id)
        data = _valid(MilestoneCreateInput, request)
        milestone = services.milestone_create(actor=actor, project=project, **data)
        return Response(MilestoneOutput(milestone).data, status=status.HTTP_201_CREATED)


class MilestoneDetailApi(APIView):
    @extend_schema(tags=TAGS, parameters=MILESTONE_IDS, responses={200: MilestoneOutput})
    def get(self, request: Request, project_id: str, milestone_id: str) -> Response:
        milestone = selectors.milestone_get(
            user=_actor(request), project_id=project_id, milestone_id=milestone_id
        )
        return Response(MilestoneOutput(milestone).data)

    @extend_schema(
        tags=TAGS,
        parameters=MILESTONE_IDS,
        request=MilestoneUpdateInput,
        responses={200: MilestoneOutput},
    )
    def patch(self, request: Request, project_id: str, milestone_id: str) -> Response:
        actor = _actor(request)
        milestone = selectors.milestone_get(
            user=actor, project_id=project_id, milestone_id=milestone_id
        )
        data = _valid(MilestoneUpdateInput, request)
        milestone = services.milestone_update(actor=actor, milestone=milestone, **data)
        return Response(MilestoneOutput(milestone).data)

    @extend_schema(tags=TAGS, parameters=MILESTONE_IDS, responses={204: None})
    def delete(self, request: Request, project_id: str, milestone_id: str) -> Response:
        actor = _actor(request)
        milestone = selectors.milestone_get(
            user=actor, project_id=project_id, milestone_id=milestone_id
        )
        services.milestone_delete(actor=actor, milestone=milestone)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- tasks ------------------------------------------------------------------------------

TASK_IDS = [*PROJECT_ID, _path_id("task_id")]


def _task_relations(data: dict[str, Any], *, project_id: int) -> dict[str, Any]:
    """Turn ``assignee_id`` / ``milestone_id`` of a task body into the objects the
    services take; a field left out stays out (unchanged), null stays None (cleared)."""
    relations: dict[str, Any] = {}
    if "assignee_id" in data:
        assignee_id = data.pop("assignee_id")
        relations["assignee"] = (
            None
            if assignee_id is None
            else selectors.member_user_get(project_id=project_id, user_id=assignee_id)
        )
    if "milestone_id" in data:
        milestone_id = data.pop("milestone_id")
        milestone: Milestone | None = (
            None
            if milestone_id is None
            else selectors.project_milestone_get(project_id=project_id, milestone_id=milestone_id)
        )
        relations["milestone"] = milestone
    return relations


class TaskListApi(APIView):
    @extend_schema(tags=TAGS, parameters=PROJECT_ID, responses={200: TaskOutput(many=True)})
    def get(self, request: Request, project_id: str) -> Response:
        tasks = selectors.task_list(user=_actor(request), project_id=project_id)
        return Response(TaskOutput(tasks, many=True).data)

    @extend_schema(
        tags=TAGS, parameters=PROJECT_ID, request=TaskCreateInput, responses={201: TaskOutput}
    )
    def post(self, request: Request, project_id: str) -> Response:
        actor = _actor(request)
        project = selectors.project_get(user=actor, project_id=project_id)
        data = _valid(TaskCreateInput, request)
        relations = _task_relations(data, project_id=project.pk)
        task = services.task_create(actor=actor, project=project, **data, **relations)
        return Response(TaskOutput(task).data, status=status.HTTP_201_CREATED)


class TaskDetailApi(APIView):
    @extend_schema(tags=TAGS, parameters=TASK_IDS, responses={200: TaskOutput})
    def get(self, request: Request, project_id: str, task_id: str) -> Response:
        task = selectors.task_get(user=_actor(request), project_id=project_id, task_id=task_id)
        return Response(TaskOutput(task).data)

    @extend_schema(
        tags=TAGS, parameters=TASK_IDS, request=TaskUpdateInput, responses={200: TaskOutput}
    )
    def patch(self, request: Request, project_id: str, task_id: str) -> Response:
        actor = _actor(request)
        task = selectors.task_get(user=actor, project_id=project_id, task_id=task_id)
        data = _valid(TaskUpdateInput, request)
        relations = _task_relations(data, project_id=task.project_id)
        task = services.task_update(actor=actor, task=task, **data, **relations)
        return Response(TaskOutput(task).data)

    @extend_schema(tags=TAGS, parameters=TASK_IDS, responses={204: None})
    def delete(self, request: Request, project_id: str, task_id: str) -> Response:
        actor = _actor(request)
        task = selectors.task_get(user=actor, project_id=project_id, task_id=task_id)
        services.task_delete(actor=actor, task=task)
        return Response(status=status.HTTP_204_NO_CONTENT)
