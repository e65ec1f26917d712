"""Pure logic: no azure.*, no git, no os.environ, no network.

Everything here takes plain values and returns plain values, so it is tested
without any outside system.
"""
