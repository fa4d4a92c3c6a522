"""The synthetic world: platform users, e-commerce, BNPL, co-branded card lifecycle, bank policies, oracle.

Entry point: :func:`cardlab.world.simulate.simulate`. See docs/world.md for the story and every table.
"""
