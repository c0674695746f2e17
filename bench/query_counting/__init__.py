"""The product's settings plus a count of every database query, for B5.

``DJANGO_SETTINGS_MODULE=bench.query_counting.settings`` runs the unchanged
product with an execute wrapper on every database connection (installed by
``connection_created``) that counts statements, and one extra URL,
``GET /bench/queries``, answering ``{"queries": N, "settle": M}``: the statements
run by the whole process since it started, and of them those that wrote Inbox rows
publishes had left pending (``inbox_log``'s settle). Benchmarks only; never in production.
"""
