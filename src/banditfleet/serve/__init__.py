"""``banditfleet serve``: the fleet engine as a network service (``pip install "banditfleet[serve]"``).

:func:`banditfleet.serve.app.create_app` builds the ASGI application
(Starlette, run on uvicorn) that speaks Zeus 0.16.0's batch-size-optimizer
protocol on a journaled folder; see docs/serve.md.
"""
