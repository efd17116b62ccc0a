"""Mutation campaigns (`kwb mutate`): generated mutants over the series' lines and a mutation score.

``generate`` (operators as data, the generator), ``kernel`` (a commit and an incremental build per
mutant, stillborn / equivalent by object), ``campaign`` (state, check order, outcomes), ``report``
(score, survivors, cost), ``real`` (the real stages: series lines, guest checks, shard merge).
"""
