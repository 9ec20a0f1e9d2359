"""The service's web face: the only package under restyle/ that imports FastAPI or Starlette.

``app`` (create_app: the guard, the error table, the routers), ``guard`` and ``policy`` (what
is decided from the headers, from one table), ``auth`` (who is calling, resolved once),
``schemas`` and ``forms`` (what goes in and out), and the routers: ``jobs``, ``files``,
``catalogue``, ``dashboard``, ``metrics``.
"""
