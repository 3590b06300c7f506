"""The bundled mock inventory service: an aiohttp storefront over correct and racy backends.

In-process use (engine, tests)::

    settings = StorefrontSettings.from_scenario(scenario, backend="memory")
    async with await start_storefront(settings, port=0) as running:
        ...  # POST running.url + "/orders"

or build the app yourself with :func:`~simulator.storefront.app.make_app`. From the shell:
``flashsale serve --scenario FILE`` (see ``simulator.commands.serve``). Heavy imports (aiohttp)
happen in the submodules, not here.
"""

from __future__ import annotations
