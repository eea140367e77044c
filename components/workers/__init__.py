"""Generation on a pool of Ray Serve workers (issue 17), used when the setting ``workers`` is set.

``pool.WorkerPool`` is the client: the engine's ``generator`` with the same ``generate()`` call as
:class:`components.generator.Generator`. ``deployment.GeneratorReplica`` is the Ray Serve
deployment: one replica = one Generator (its own bounded adapter cache and exact base restore).
Both modules import Ray; nothing imports them unless the setting is on, so the embedded default
never needs Ray (requirements-workers.txt).
"""
