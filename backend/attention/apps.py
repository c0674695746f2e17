from django.apps import AppConfig


class AttentionConfig(AppConfig):
    name = "backend.attention"
    label = "attention"
    verbose_name = "Attention"
