"""Deploying function versions: build, store and record packages, then activate them.

One module per activation target; ``functionapp`` runs them on a separate Function App.
"""
