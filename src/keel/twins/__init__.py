"""Digital twins as records: versions of a simulated system whose demand was fitted on a dataset version
(lineage), and what was learnt on each (classic baselines, the optimum, policy evaluations,
trajectories). The fitting and simulation are keel.rl's (compute); `ws.rl` (keel.workspace) joins them.

May import: keel.storage (through the Workspace's MetadataStore), keel.entities, keel.entities_rl,
keel.errors, keel.refs.
"""

from keel.twins.twins import Twins

__all__ = ["Twins"]
