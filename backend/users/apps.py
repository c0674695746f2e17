from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "backend.users"
    label = "users"

    def ready(self) -> None:
        from backend.users import signals  # noqa: F401  (connects the receivers)
