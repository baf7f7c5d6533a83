"""Serving mode: a model server (harness ``serve``) driven over HTTP, its window measured.

``settings`` (what a serving run does), ``client`` (HTTP), ``server`` (the server's lifecycle),
``export`` (cached exports for the exported engines), ``metrics``, and ``workload`` (the step of
the run pipeline that drives it all).
"""
